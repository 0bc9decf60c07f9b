"""BitFit: only the bias terms train. The artefact is just those biases (a few KB); merging
writes them into the base, which is what loading does already."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from danlu.errors import ConfigError, UserError
from danlu.methods.base import Method, MethodContext, freeze_all
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape
from danlu.methods.small_state import load_trained_tensors, save_trained_tensors

WEIGHTS = "bitfit_biases.safetensors"
# Families whose checkpoints carry bias terms (the attention q/k/v biases of Qwen; every
# linear layer of BERT, GPT-2, Phi-2, OPT, Falcon-RW ...). Llama, Mistral, Gemma have none.
MODELS_WITH_BIASES = "builtin:tiny, builtin:mini, builtin:small, Qwen2/Qwen2.5 (q/k/v biases), BERT, GPT-2, Phi-2, OPT"


def bias_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]


@register_method("bitfit")
class BitFit(Method):
    name: Literal["bitfit"] = "bitfit"

    trains = "bias terms only"
    can_merge = True
    inference_cost = "none"
    memory_class = "lowest"
    artefact = "adapter"

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        n = arch.bias_params()
        if n == 0:
            raise UserError(f"{arch.model_type} has no bias parameters, so BitFit has nothing to train",
                            where="method.name", hint="pick a model with biases (Qwen2, BERT, Phi-2) or another method")
        return MethodShape("bitfit", n, biases_train=True, largest_trainable=max(arch.vocab, arch.intermediate))

    def check(self, run_config) -> None:
        from danlu.methods.probe import meta_model

        model = meta_model(run_config)
        if not bias_names(model):
            self._no_biases(run_config.model.name_or_path, getattr(model.config, "model_type", "?"))

    @staticmethod
    def _no_biases(name: str, model_type: str):
        raise ConfigError(
            f"method bitfit trains only bias terms, and {name} ({model_type}) has none",
            where="method.name",
            hint=f"use a model with biases ({MODELS_WITH_BIASES}), or another method such as ia3 or lora",
        )

    def apply(self, model, ctx: MethodContext):
        names = set(bias_names(model))
        if not names:
            self._no_biases(getattr(model, "name_or_path", "this model"), ctx.model_type)
        freeze_all(model)
        for name, p in model.named_parameters():
            if name in names:
                p.requires_grad_(True)
        return model

    def save_final(self, trainer, out_dir: Path) -> None:
        save_trained_tensors(trainer, out_dir, WEIGHTS)

    def load_trained(self, base_model, artefact_dir: Path):
        return load_trained_tensors(base_model, artefact_dir, WEIGHTS)

    def merge(self, model):
        return model  # the trained biases already sit in the base model's own bias tensors

    def auto_learning_rate(self, n_params: int) -> float:
        """Biases are few and start at zero: BitFit uses a larger rate (1e-3 to 1e-4 in the paper)."""
        return 1e-2 if n_params < 100e6 else 1e-3
