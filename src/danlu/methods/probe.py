"""Config-time checks that need the model's structure but not its weights: the model built on
PyTorch's meta device (no memory, no download beyond config.json)."""

from __future__ import annotations

from functools import lru_cache


def meta_model(run_config):
    """The run's model class, built from its config.json on the meta device."""
    m = run_config.model
    return _meta_model(m.name_or_path, m.revision, m.trust_remote_code, run_config.stage_options().task)


@lru_cache(maxsize=8)
def _meta_model(name_or_path: str, revision: str | None, trust_remote_code: bool, task: str):
    import torch
    from transformers import AutoConfig

    from danlu.models.load import model_class, resolve_model_path

    path = resolve_model_path(name_or_path)
    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return model_class(task).from_config(config, trust_remote_code=trust_remote_code)


def layer_prefixes(model) -> list[str]:
    """'model.layers.0.', 'model.layers.1.' ...: the repeated blocks, in order (the longest
    ModuleList of the model: decoder layers, encoder layers, GPT-2's h; on a vision-language model,
    the language model's, never the vision tower's)."""
    import torch.nn as nn

    from danlu.models.processor import vision_part

    best_name, best = "", None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and vision_part(name) is None and (best is None or len(module) > len(best)):
            best_name, best = name, module
    return [f"{best_name}.{i}." for i in range(len(best))] if best is not None else []
