"""Full fine-tuning: every weight trains. Best quality ceiling, most memory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from danlu.methods.base import Method, MethodContext
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape


@register_method("full")
class Full(Method):
    name: Literal["full"] = "full"

    trains = "all weights"
    can_merge = False
    inference_cost = "none"
    memory_class = "highest (weights + grads + 2 optimizer states)"
    artefact = "model"

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        return MethodShape("full", arch.n_params, trainable_blocks=arch.layers, embeddings_train=True,
                           largest_trainable=max(arch.vocab * arch.hidden,
                                                 max(lin.d_in * lin.d_out for lin in arch.block_linears())))

    def apply(self, model, ctx: MethodContext):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def auto_learning_rate(self, n_params: int) -> float:
        """Full fine-tuning: ~2e-5 for billion-scale models (the seeds); small builtin models more."""
        if n_params < 100e6:
            return 5e-4
        return 5e-5 if n_params < 1e9 else 2e-5

    def load_trained(self, base_model, artefact_dir: Path):
        raise NotImplementedError("a full fine-tune is loaded directly from its model/ directory")
