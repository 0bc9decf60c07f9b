"""Prompt tuning (PEFT): learned embeddings of virtual tokens put in front of the input
embeddings; nothing inside the model changes. The model's logits are longer than the batch
by the virtual tokens, so the loss takes every position (no logits_to_keep) and drops them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from danlu.methods.base import MethodContext
from danlu.methods.peft_base import PEFT_TASK, VirtualTokenMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape, prompt_shape


@register_method("prompt")
class Prompt(VirtualTokenMethod):
    name: Literal["prompt"] = "prompt"
    init_text: str | None = Field(
        None, description="Initialise the virtual tokens from this text's token embeddings (else random).")

    trains = "input embeddings of virtual tokens"
    supports_logits_to_keep: ClassVar[bool] = False

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        return prompt_shape(arch, self.num_virtual_tokens)

    def peft_config(self, ctx: MethodContext, model):
        from peft import PromptTuningConfig, PromptTuningInit

        kwargs = {}
        if self.init_text:
            kwargs = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": self.init_text,
                      "tokenizer_name_or_path": model.name_or_path}  # the loaded model's own folder
        return PromptTuningConfig(num_virtual_tokens=self.num_virtual_tokens, task_type=PEFT_TASK[ctx.task], **kwargs)
