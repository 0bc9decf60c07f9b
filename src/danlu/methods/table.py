"""The rows of `danlu methods`: what each method (and each LoRA shorthand) trains, whether it
merges, what it costs at inference, its memory class, and, given a model, its trainable
parameters on that model (the method applied for real to a freshly loaded copy)."""

from __future__ import annotations

from danlu.errors import UserError


# from most to fewest trained weights; methods not listed here follow in registry order
ORDER = ["full", "freeze", "lora", "adalora", "adapter", "p_tuning", "prefix", "prompt", "bitfit", "ia3"]


def method_variants() -> list[tuple[str, object]]:
    """(name as written in a config, its options with defaults): each method, then its shorthands."""
    from danlu.methods.registry import METHODS

    names = sorted(METHODS.names(), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    out = []
    for name in names:
        cls = METHODS.get(name)
        for label in (name, *METHODS.aliases_of(name)):
            out.append((label, cls.model_validate({"name": label})))
    return out


def methods_table(model: str | None = None) -> list[dict]:
    from danlu.methods.registry import METHODS

    rows = []
    for label, method in method_variants():
        canonical = METHODS.canonical(label)
        row = {"method": label, "is": canonical if canonical != label else None, **method.facts()}
        if model:
            row.update(trainable_on(model, method))
        rows.append(row)
    return rows


def trainable_on(model_name: str, method) -> dict:
    """Trainable / total parameters of `method` applied to a fresh `model_name`; or why it does not fit."""
    import torch

    from danlu.methods.base import MethodContext, count_parameters
    from danlu.models.load import load_model
    from danlu.models.processor import freeze_vision, is_vision_config

    try:
        model = load_model(model_name, dtype=torch.float32, **method.load_kwargs())
        torch.manual_seed(0)
        model = method.apply(model, MethodContext(model_type=getattr(model.config, "model_type", ""),
                                                  total_steps=1000))
        if is_vision_config(getattr(model, "config", None)):  # as danlu train: method.freeze_* on the image side
            freeze_vision(model, tower=method.freeze_vision_tower, projector=method.freeze_projector)
    except UserError as exc:
        return {"error": str(exc).splitlines()[0]}
    except ValueError as exc:  # PEFT: no default target modules for this architecture (IA3 on a VLM ...)
        return {"error": f"not on this model: {str(exc).splitlines()[0]}"}
    trainable, total = count_parameters(model)
    return {"trainable_params": trainable, "total_params": total, "trainable_percent": 100.0 * trainable / max(total, 1)}
