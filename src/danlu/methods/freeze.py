"""Freeze tuning: the base stays frozen except the last N blocks and/or named modules, which
train fully (LLaMA-Factory's `freeze`). Saves the whole model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from danlu.errors import ConfigError
from danlu.methods.base import Method, MethodContext, freeze_all, invalid
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape


def name_matches(param_name: str, module_names: list[str]) -> bool:
    """'mlp' matches model.layers.3.mlp.up_proj.weight; 'lm_head' matches lm_head.weight;
    'layers.3' matches everything in that block (whole dotted components only)."""
    dotted = f".{param_name}."
    return any(f".{m.strip('.')}." in dotted for m in module_names)


@register_method("freeze")
class Freeze(Method):
    name: Literal["freeze"] = "freeze"
    layers: int | None = Field(
        None, description="Train the last N blocks (a negative N: the first |N|). Default 2 when modules is not set.")
    modules: list[str] | None = Field(
        None, description="Train modules with these names anywhere in the model (mlp, self_attn, lm_head, norm ...).")

    trains = "the last N blocks and/or named modules, fully"
    can_merge = False
    inference_cost = "none"
    memory_class = "medium (grads + optimizer states for the trained blocks)"
    artefact = "model"

    @model_validator(mode="after")
    def _trains_something(self):
        if self.layers == 0 and not self.modules:
            raise invalid("layers: 0 with no modules trains nothing; give layers ≥ 1 or modules")
        return self

    @property
    def n_layers(self) -> int:
        return self.layers if self.layers is not None else (0 if self.modules else 2)

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        """The N trained blocks in full (named `modules` alone: planned as 2 blocks)."""
        k = max(1, min(abs(self.n_layers) or 2, arch.layers))
        return MethodShape("freeze", k * arch.block_params(), trainable_blocks=k,
                           largest_trainable=max(lin.d_in * lin.d_out for lin in arch.block_linears()))

    def check(self, run_config) -> None:
        from danlu.methods.probe import layer_prefixes, meta_model

        model = meta_model(run_config)
        n = len(layer_prefixes(model))
        if abs(self.n_layers) > n:
            raise ConfigError(f"method.layers={self.n_layers} but {run_config.model.name_or_path} has {n} blocks",
                              where="method.layers", hint=f"use 1..{n}")
        self._check_modules(model)

    def _check_modules(self, model) -> None:
        names = [n for n, _ in model.named_parameters(remove_duplicate=False)]  # lm_head of a tied model too
        missing = [m for m in self.modules or [] if not any(name_matches(n, [m]) for n in names)]
        if missing:
            children = sorted({part for n in names for part in n.split(".")[:-1] if not part.isdigit()})
            raise ConfigError(f"method.modules: no module named {', '.join(missing)} in this model",
                              where="method.modules", hint="names in this model: " + ", ".join(children))

    def trained_names(self, model) -> set[str]:
        from danlu.methods.probe import layer_prefixes

        blocks = layer_prefixes(model)
        chosen = []
        k = self.n_layers
        if k:
            chosen = blocks[-k:] if k > 0 else blocks[:-k]
        return {n for n, _ in model.named_parameters(remove_duplicate=False)
                if any(n.startswith(prefix) for prefix in chosen) or name_matches(n, self.modules or [])}

    def apply(self, model, ctx: MethodContext):
        self._check_modules(model)
        trained = self.trained_names(model)
        freeze_all(model)
        for name, p in model.named_parameters(remove_duplicate=False):  # a tied lm_head trains the embeddings
            if name in trained:
                p.requires_grad_(True)
        return model

    def auto_learning_rate(self, n_params: int) -> float:
        if n_params < 100e6:
            return 5e-4
        return 5e-5 if n_params < 1e9 else 2e-5
