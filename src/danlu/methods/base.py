"""What every fine-tuning method provides. A method's options class is also its strategy:
it says how to load the base (quantisation), what becomes trainable, and how to save and
reload the result. One subclass per module, one `@register_method` each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import Field, model_validator

from danlu.schema_base import StrictModel

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from danlu.methods.shape import MethodShape, ModelShape


@dataclass
class MethodContext:
    """What a method may need to know when it changes a model."""

    task: str = "causal_lm"  # causal_lm | seq_cls | token_cls
    seed: int = 42
    model_type: str = ""
    total_steps: int | None = None  # optimizer steps of the run (AdaLoRA's rank schedule needs it)
    # n → the first n training batches (padded, with input_ids / attention_mask / labels), for
    # data-aware initialisations (LoRA's init: eva); None where no training data is at hand
    batch_source: Callable[[int], list[dict]] | None = None

    def sample_batches(self, n: int) -> list[dict]:
        """The first `n` training batches of the run (fewer when the data is shorter)."""
        if self.batch_source is None:
            from danlu.errors import DanluError

            raise DanluError("this method needs training batches at set-up, and none were given to it")
        return self.batch_source(n)


# why an option of one method makes no sense under another (shown with the error)
FOREIGN_OPTION_REASONS = {
    "quantize": "an optimizer cannot update 4/8-bit weights, so only a method that keeps the base frozen "
                "and trains added weights can use a quantised base: lora (or its shorthand qlora)",
}


class Method(StrictModel):
    name: str
    freeze_vision_tower: bool = Field(
        True, description="Vision-language models: keep the vision tower (image encoder) frozen; LoRA then adapts "
        "the language model only. No effect on text models.")
    freeze_projector: bool = Field(
        True, description="Vision-language models: keep the projector (vision features → language embeddings) "
        "frozen (LLaMA-Factory's default); false trains it (full) or adapts it (LoRA).")

    @model_validator(mode="before")
    @classmethod
    def _option_of_another_method(cls, data):
        """`method: {name: full, quantize: nf4}`: say whose option it is and why, not just 'unknown key'."""
        if not isinstance(data, dict):
            return data
        from danlu.methods.registry import METHODS

        mine = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        for key in data:
            owners = [n for n, c in METHODS if key not in mine and key in c.model_fields]
            if owners:
                why = FOREIGN_OPTION_REASONS.get(key, "")
                raise invalid(f"'{key}' is an option of {', '.join(owners)}, not of {data.get('name')}"
                              + (f": {why}" if why else ""))
        return data

    # For `danlu methods` and the docs (class-level facts, not options).
    trains: ClassVar[str] = ""
    can_merge: ClassVar[bool] = False
    merge_note: ClassVar[str] = ""  # why it cannot merge (shown when a merge is asked of it)
    inference_cost: ClassVar[str] = "none"
    memory_class: ClassVar[str] = "high"
    artefact: ClassVar[str] = "adapter"  # adapter/ (small) or model/ (full weights)
    # virtual-token methods change the sequence length inside the model: no packed 4D masks,
    # and the model must return logits for every position
    supports_packing: ClassVar[bool] = True
    supports_logits_to_keep: ClassVar[bool] = True

    def check(self, run_config) -> None:
        """Cross-section checks at config time; raise ConfigError with the reason."""

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        """What these options train and add on a model of this shape (danlu.methods.shape), read by
        the planner. Every registered method defines it (registration refuses a class without)."""
        raise NotImplementedError

    memory_shape.placeholder = True  # what register_method looks for: this one is not a declaration

    def load_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for `from_pretrained` (e.g. a quantization_config)."""
        return {}

    def apply(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        """Make the intended parameters trainable (wrapping the model if needed) and return it."""
        raise NotImplementedError

    def continue_adapter(self, model: nn.Module, ctx: MethodContext, adapter_dir: Path) -> nn.Module:
        """Load an earlier adapter of this method onto `model`, trainable (model.adapter_mode: continue)."""
        from danlu.errors import ConfigError

        raise ConfigError(f"method {self.name!r} has no adapter to continue", where="model.adapter_mode",
                          hint="use model.adapter_mode: stack (merge the earlier adapter, train this method on top)")

    def callbacks(self, ctx) -> list:
        """TrainerCallbacks the method needs during training (AdaLoRA's rank allocation ...)."""
        return []

    def optimizer_groups(self, model: nn.Module, learning_rate: float, weight_decay: float) -> list[dict] | None:
        """Parameter groups when the method needs its own (LoRA+); None = one group."""
        return None

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A regulariser added once per optimizer step to the training loss (AdaLoRA's
        orthogonality penalty); None = nothing."""
        return None

    def check_resume(self) -> None:
        """Raise a UserError when a run of this method cannot continue from a checkpoint."""

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

    def require_mergeable(self) -> None:
        """Raise a UserError saying why, when this method's result cannot be folded into the base."""
        from danlu.errors import UserError

        if self.can_merge:
            return
        if self.artefact == "model":
            raise UserError(f"method {self.name!r} already saves the whole model (model/); there is nothing to merge",
                            hint="load or export the run's model/ directory directly")
        raise UserError(f"method {self.name!r} cannot be merged into the base model: {self.merge_note}",
                        hint="serve the adapter on its base model, or train with a mergeable method "
                             "(lora, ia3, adalora, bitfit)")

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the trained parameters into the base and return a plain transformers model."""
        self.require_mergeable()
        raise NotImplementedError

    def facts(self) -> dict[str, Any]:
        """The row of `danlu methods` for these options (a variant may say more than its class)."""
        return {"trains": self.trains, "can_merge": self.can_merge, "inference_cost": self.inference_cost,
                "memory_class": self.memory_class, "artefact": self.artefact}


def invalid(reason: str):
    """A validation error whose message is just `reason` (pydantic would prefix 'Value error, ')."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("invalid_method_options", "{reason}", {"reason": reason})


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def logical_numel(p) -> int:
    """Values a parameter holds: a bitsandbytes 4-bit weight packs two values per byte of its
    storage (whatever the storage dtype: uint8, or the compute dtype for FSDP)."""
    if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
        return p.numel() * p.element_size() * 2
    return p.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit packed weights count as their logical size."""
    trainable = total = 0
    for p in model.parameters():
        n = logical_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
