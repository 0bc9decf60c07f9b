"""Artefacts of methods that train a few named tensors of their own (BitFit's biases, the
bottleneck adapters): one safetensors file of just those tensors, put back by name."""

from __future__ import annotations

from pathlib import Path

from danlu.errors import UserError


def save_trained_tensors(trainer, out_dir: Path, filename: str) -> None:
    """The tensors that require grad, under their names in the (unwrapped) model."""
    from safetensors.torch import save_file

    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    if trainer.args.should_save:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(state, str(out_dir / filename), metadata={"format": "pt"})


def load_trained_tensors(model, artefact_dir: Path, filename: str):
    """Copy the saved tensors into `model`; every one must find its place, with its shape."""
    import torch
    from safetensors.torch import load_file

    path = artefact_dir / filename
    if not path.is_file():
        raise UserError(f"{artefact_dir} has no {filename}", hint="point at the adapter/ folder of a finished run")
    saved = load_file(str(path))
    params = dict(model.named_parameters())
    unknown = [k for k in saved if k not in params or params[k].shape != saved[k].shape]
    if unknown:
        raise UserError(f"{path}: {len(unknown)} tensors do not fit this base model (e.g. {unknown[0]})",
                        hint="load it onto the base model it was trained on (danlu.json: base_model)")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].dtype))
    return model
