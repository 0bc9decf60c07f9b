"""What every fine-tuning method provides. A method's options class is also its strategy:
it says how to load the base (quantisation), what becomes trainable, and how to save and
reload the result. One subclass per module, one `@register_method` each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from danlu.config.base import StrictModel

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class MethodContext:
    """What a method may need to know when it changes a model."""

    task: str = "causal_lm"  # causal_lm | seq_cls | token_cls
    seed: int = 42
    model_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Method(StrictModel):
    name: str

    # For `danlu methods` and the docs (class-level facts, not options).
    trains: ClassVar[str] = ""
    can_merge: ClassVar[bool] = False
    inference_cost: ClassVar[str] = "none"
    memory_class: ClassVar[str] = "high"
    artefact: ClassVar[str] = "adapter"  # adapter/ (small) or model/ (full weights)
    # virtual-token methods change the sequence length inside the model: no packed 4D masks,
    # and the model must return logits for every position
    supports_packing: ClassVar[bool] = True
    supports_logits_to_keep: ClassVar[bool] = True

    def check(self, run_config) -> None:
        """Cross-section checks at config time; raise ConfigError with the reason."""

    def load_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for `from_pretrained` (e.g. a quantization_config)."""
        return {}

    def apply(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        """Make the intended parameters trainable (wrapping the model if needed) and return it."""
        raise NotImplementedError

    def callbacks(self, ctx) -> list:
        """TrainerCallbacks the method needs during training (AdaLoRA's rank allocation ...)."""
        return []

    def optimizer_groups(self, model: nn.Module, learning_rate: float, weight_decay: float) -> list[dict] | None:
        """Parameter groups when the method needs its own (LoRA+); None = one group."""
        return None

    def save_final(self, trainer, out_dir: Path) -> None:
        """Write the final artefact (adapter/ or model/); the Trainer gathers sharded weights."""
        trainer.save_model(str(out_dir))

    def auto_learning_rate(self, n_params: int) -> float:
        """`train.learning_rate: auto` for adapter methods, by model size (the seeds' table:
        7B 2e-4, 13B 1e-4, 30B 5e-5, 70B 2e-5). Tiny randomly initialised builtin models learn
        from scratch and need more."""
        if n_params < 100e6:
            return 1e-3
        for limit, lr in ((10e9, 2e-4), (20e9, 1e-4), (45e9, 5e-5)):
            if n_params < limit:
                return lr
        return 2e-5

    def load_trained(self, base_model: nn.Module, artefact_dir: Path) -> nn.Module:
        """Put a saved artefact onto a freshly loaded base model (for chat, eval, export)."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the trained parameters into the base and return a plain transformers model."""
        from danlu.errors import UserError

        raise UserError(f"method {self.name!r} cannot be merged into the base model")


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit packed weights count as their logical size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
            n = n * 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
