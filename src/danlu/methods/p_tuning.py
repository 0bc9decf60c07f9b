"""P-tuning (PEFT's prompt encoder): virtual-token embeddings produced by a small MLP or LSTM
over learned inputs, put in front of the input embeddings. After training only the encoder's
output is saved (the virtual-token embeddings), so inference costs what prompt tuning costs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from danlu.methods.base import MethodContext
from danlu.methods.peft_base import PEFT_TASK, VirtualTokenMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape, prompt_shape


@register_method("p_tuning")
class PTuning(VirtualTokenMethod):
    name: Literal["p_tuning"] = "p_tuning"
    encoder_type: Literal["MLP", "LSTM"] = Field("MLP", description="Prompt encoder: MLP or LSTM.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of the encoder (default: model width).")
    encoder_num_layers: int = Field(2, ge=1, description="Layers of the encoder (LSTM).")
    encoder_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the encoder.")

    trains = "a prompt encoder (MLP/LSTM) that makes the virtual tokens"
    supports_logits_to_keep: ClassVar[bool] = False

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        # the encoder is counted only when its width is given (as the planner always has); with the
        # default width PEFT's encoder adds ~2·d² that the plan leaves out
        return prompt_shape(arch, self.num_virtual_tokens, self.encoder_hidden_size)

    def peft_config(self, ctx: MethodContext, model):
        from peft import PromptEncoderConfig

        kwargs = {"encoder_hidden_size": self.encoder_hidden_size} if self.encoder_hidden_size else {}
        return PromptEncoderConfig(num_virtual_tokens=self.num_virtual_tokens, task_type=PEFT_TASK[ctx.task],
                                   encoder_reparameterization_type=self.encoder_type,
                                   encoder_num_layers=self.encoder_num_layers, encoder_dropout=self.encoder_dropout,
                                   **kwargs)
