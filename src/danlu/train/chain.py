"""`model.adapter` at training time: put the earlier adapter onto the freshly loaded base.

  continue  PeftModel.from_pretrained(base, adapter, is_trainable=True): the same adapter trains on;
            the run's method options become the adapter's own (rank, targets ...).
  stack     the earlier adapter is merged into the base (frozen for good), the run's method
            trains a new adapter (or the whole model) on top.

The DPO/KTO reference of a continued adapter is the starting policy (base + earlier adapter):
TRL copies a PEFT model's adapter into a frozen "ref" adapter, and danlu keeps that copy
(stages/_trl_common.drop_ref_adapter). Stacked, the base with the new adapter switched off is
already base + earlier adapter."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import ConfigError
from danlu.methods.stack import merge_below
from danlu.models.chain import STACKED, AdapterSource, canonical, find_adapter, stacked_dirs

log = logging.getLogger(__name__)
LORA_KEYS = {"r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "target_modules": "target_modules",
             "modules_to_save": "modules_to_save", "use_dora": "use_dora", "use_rslora": "use_rslora"}


@dataclass
class Chain:
    """What a run with model.adapter builds on (RunContext.chain)."""

    source: AdapterSource
    continued: bool  # adapter_mode continue: the source adapter itself trains on
    below: list[Path] = field(default_factory=list)  # adapters merged into the base first, in order
    links: list[dict] = field(default_factory=list)  # the chain so far (run_info.json, danlu.json)


def source_of(cfg) -> AdapterSource | None:
    if not cfg.model.adapter:
        return None
    src = find_adapter(cfg.model.adapter)
    if canonical(src.base_model) != canonical(cfg.model.name_or_path):
        raise ConfigError(f"{cfg.model.adapter} was trained on {src.base_model!r}, not on {cfg.model.name_or_path!r}",
                          where="model.adapter", hint=f"set model.name_or_path: {src.base_model}")
    return src


def adapter_method(src: AdapterSource, current):
    """The method options the earlier adapter was trained with (continue mode)."""
    from danlu.methods.registry import METHODS

    if src.info.get("method"):
        data = dict(src.info["method"])
    elif src.peft_config.get("peft_type") == "LORA":
        data = {"name": "lora", **{k: src.peft_config[v] for k, v in LORA_KEYS.items()
                                   if src.peft_config.get(v) is not None}}
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = sorted(data["target_modules"])
    else:
        data = current.model_dump(mode="json", by_alias=True)
    if data.get("init") in ("pissa", "olora", "eva"):
        data["init"] = "default"  # its weights are loaded as they are (PiSSA/OLoRA saved as a plain LoRA)
    method = METHODS.get(data["name"]).model_validate(data)
    if METHODS.get(current.name) is not METHODS.get(method.name):
        raise ConfigError(f"model.adapter_mode continue trains the earlier {method.name} adapter further, "
                          f"but method is {current.name}", where="method.name",
                          hint=f"set method.name: {method.name}, or model.adapter_mode: stack (a new {current.name} "
                               "on top of the merged earlier adapter)")
    return method


def prepare(cfg, ctx) -> None:
    """Before the model is built: resolve the source, adopt its method (continue), note the chain."""
    src = source_of(cfg)
    if src is None:
        return
    mode = cfg.model.adapter_mode
    if mode == "continue":
        method = adapter_method(src, cfg.method)
        if method.model_dump() != cfg.method.model_dump():
            log.info("continuing %s: method options come from that adapter (%s)", src.path, method.name)
        cfg.method = method
    elif getattr(cfg.method, "quantize", None):
        raise ConfigError("adapter_mode stack merges the earlier adapter into the base, which a quantised base "
                          "cannot hold", where="model.adapter_mode",
                          hint="use adapter_mode: continue, or drop method.quantize")
    below = stacked_dirs(src.path, src.info) + ([src.path] if mode == "stack" else [])
    ctx.chain = Chain(src, mode == "continue", below, [*src.chain(), src.link(mode)])
    ctx.artefact_meta["chain"] = ctx.chain.links


def attach(cfg, ctx, model, mctx):
    """The run's method applied to the base, on top of / continuing the earlier adapter."""
    if ctx.chain is None:
        return cfg.method.apply(model, mctx)
    model = merge_below(model, ctx.chain.below)
    if ctx.chain.continued:
        return cfg.method.continue_adapter(model, mctx, ctx.chain.source.path)
    return cfg.method.apply(model, mctx)


def copy_stacked(ctx, out: Path) -> None:
    """An adapter artefact keeps a copy of the adapters merged under it (loadable on its own)."""
    below = ctx.chain.below if ctx.chain is not None else []
    if not below or ctx.config.method.artefact != "adapter":
        return
    rels = []
    for i, folder in enumerate(below):
        rel = f"{STACKED}/{i:02d}"
        shutil.copytree(folder, out / rel, ignore=shutil.ignore_patterns(STACKED, "tokenizer*", "*.jinja"))
        rels.append(rel)
    ctx.artefact_meta["stacked"] = rels
