"""Adapters merged under another (model.adapter_mode: stack): apply each earlier adapter to the
base and merge it, in order, before the adapter trained on top is put on. Used when training
(train/chain.py), for the DPO reference of a full fine-tune, and when loading (infer/load.py)."""

from __future__ import annotations

import json
from pathlib import Path


def merge_below(model, folders: list[Path]):
    """Merge each adapter folder into `model`, in order (a plain transformers model comes back)."""
    for folder in folders:
        model = merge_adapter(model, folder)
    return model


def merge_adapter(model, folder: Path):
    from peft import PeftModel

    from danlu.methods.registry import METHODS

    info_path = folder / "danlu.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    if info.get("method"):
        method = METHODS.get(info["method"]["name"]).model_validate(info["method"])
        method.require_mergeable()
        return method.merge(method.load_trained(model, folder))
    return PeftModel.from_pretrained(model, str(folder), is_trainable=False).merge_and_unload()
