"""The run's base model, loaded as its stage and method need it: the runner builds on it, and stages
that keep a frozen reference copy (DPO, KTO, ORPO on a full fine-tune) load a second one."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def load_base(ctx):
    """The base model for the run's stage and method (quantised if the method says so)."""
    from danlu.models.load import load_model, storage_dtype
    from danlu.runplan import packs_rows
    from danlu.train.levers import resolve_attention

    cfg, method, stage = ctx.config, ctx.config.method, ctx.config.stage_options()
    kwargs = dict(stage.model_kwargs(ctx))
    kwargs.update(method.load_kwargs())
    dtype = storage_dtype(cfg.model.dtype, trains_base=method.artefact == "model", precision=ctx.precision,
                          quantized="quantization_config" in kwargs)
    packs = packs_rows(cfg, vision=getattr(ctx, "processor", None) is not None)  # trainer.choose_collator
    attn = resolve_attention(cfg.model.attn_implementation, ctx.precision, packing=packs)
    load = dict(task=stage.task, dtype=dtype, revision=cfg.model.revision,
                trust_remote_code=cfg.model.trust_remote_code, **kwargs)
    try:
        return load_model(cfg.model.name_or_path, attn_implementation=attn, **load)
    except (ValueError, ImportError) as exc:
        if attn == cfg.model.attn_implementation or "flash" not in str(exc).lower():
            raise
        # auto chose flash-attention, which this architecture does not support: transformers' default
        log.info("flash-attention cannot run %s (%s); using sdpa", cfg.model.name_or_path, str(exc).splitlines()[0])
        return load_model(cfg.model.name_or_path, attn_implementation="auto", **load)
