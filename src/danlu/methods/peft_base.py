"""The part every PEFT-backed method shares: wrap the model with `get_peft_model`, say clearly
when a target module does not exist, reload with `PeftModel.from_pretrained`, merge with
`merge_and_unload`. Virtual-token methods (prefix, prompt, P-tuning) add a token count."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from danlu.errors import ConfigError
from danlu.methods.base import Method, MethodContext

# image classification and speech recognition have no PEFT task type: the plain PeftModel passes
# pixel_values / input_features through (the image head is trained whole: HEAD_MODULES)
PEFT_TASK = {"causal_lm": "CAUSAL_LM", "seq_cls": "SEQ_CLS", "token_cls": "TOKEN_CLS", "image_cls": None, "asr": None}
HEAD_MODULES = {"image_cls": ["classifier"]}


def linear_module_names(model) -> list[str]:
    """Short names of the model's linear layers (q_proj, down_proj ...): what target_modules may name."""
    import torch.nn as nn

    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
             if isinstance(m, nn.Linear) or "Linear" in type(m).__name__}
    return sorted(n for n in names if n)


class PeftMethod(Method):
    """A method implemented by PEFT: subclasses build its PeftConfig."""

    def peft_config(self, ctx: MethodContext, model):
        raise NotImplementedError

    def apply(self, model, ctx: MethodContext):
        from peft import get_peft_model

        config = self.peft_config(ctx, model)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            text = str(exc)
            if re.search(r"[Tt]arget modules? .*not found", text) or "not found in the base model" in text:
                raise ConfigError(
                    f"method {self.name}: {text.splitlines()[0]}",
                    where="method.target_modules",
                    hint="linear layers of this model: " + ", ".join(linear_module_names(model)),
                ) from None
            raise

    def prepare_base(self, model):
        """What the base needs before an adapter goes on it (QLoRA: k-bit training preparation)."""
        return model

    def continue_adapter(self, model, ctx: MethodContext, adapter_dir: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(self.prepare_base(model), str(adapter_dir), is_trainable=True)

    def load_trained(self, base_model, artefact_dir: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(artefact_dir), is_trainable=False)

    def merge(self, model):
        self.require_mergeable()
        return model.merge_and_unload()


class VirtualTokenMethod(PeftMethod):
    """Learned vectors put in front of every sequence. The sequence the model sees is longer
    than the batch: no packing (PEFT prepends to a 2D attention mask only)."""

    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Learned virtual tokens in front of every sequence.")

    can_merge = False
    merge_note = "its learned virtual tokens are extra inputs, not a change to any weight"
    inference_cost = "attention over the virtual tokens in every forward pass"
    memory_class = "lowest (base frozen, activations of the extra tokens)"
    supports_packing: ClassVar[bool] = False

    def auto_learning_rate(self, n_params: int) -> float:
        """Prompt-style methods train few parameters from a random start: a high rate (PEFT's
        examples use 1e-2 to 3e-2)."""
        return 3e-2 if n_params < 100e6 else 1e-2
