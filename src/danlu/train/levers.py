"""The GPU levers of a training run, decided once, from the config and the machine:

  attention  model.attn_implementation: auto → flash_attention_2 on CUDA when the flash-attn
             package is installed and compute is bf16/fp16; a packed causal-LM run on a CPU:
             danlu_varlen_sdpa (causal SDPA per sample, models/varlen_sdpa.py); else sdpa
  packing    flash-attention, danlu_varlen_sdpa: padding-free varlen rows (data/collate.py
             VarlenCollator); sdpa/eager: rows with a 4D block-diagonal mask (PackingCollator)
  liger      train.liger_kernel: Liger's Triton RMSNorm, RoPE and SwiGLU kernels, applied by
             transformers' own switch (TrainingArguments.use_liger_kernel). Liger's cross-entropy
             and fused linear cross-entropy stay off: danlu's chunked loss (fused_ce.py) already
             never makes full-vocabulary logits and normalises over the accumulated step
  offload    train.offload_activations: tensors autograd saves go to pinned host memory and come
             back in backward (CUDA). With gradient checkpointing, transformers' own offloaded
             checkpointing (each block's saved input, layers × tokens × hidden, leaves the GPU);
             without it, `torch.autograd.graph.save_on_cpu` around the forward (every saved
             activation leaves the GPU). On a CPU the activations are in host memory already: a
             no-op, logged, so a config written for a GPU still runs a CPU smoke test.
"""

from __future__ import annotations

import contextlib
import logging

from danlu import runplan
from danlu.errors import ConfigError
from danlu.runplan import cuda_available, flash_attn_installed, liger_installed, uses_causal_lm_trainer

log = logging.getLogger(__name__)

# Liger kernels danlu turns on (kwargs of liger_kernel's apply_liger_kernel_to_<model>)
LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
                 "fused_linear_cross_entropy": False}
LIGER_STAGES = runplan.CAUSAL_LM_STAGES  # stages whose trainer is danlu's CausalLMTrainer

__all__ = ["cuda_available", "flash_attn_installed", "liger_installed", "uses_causal_lm_trainer"]


def resolve_attention(requested: str, precision: str, packing: bool = False) -> str:
    """The attn_implementation to load the model with (danlu.runplan decides; this machine's probes).
    `packing` (danlu's causal-LM trainer packs the batches): where auto finds no flash-attention and
    no CUDA, danlu_varlen_sdpa — padding-free rows, causal SDPA per sample (models/varlen_sdpa.py)."""
    attn = runplan.resolve_attention(requested, precision, lambda: cuda_available() and flash_attn_installed(),
                                     packing=packing, cuda=cuda_available())
    if attn == runplan.VARLEN_SDPA:
        from danlu.models.varlen_sdpa import register

        register()
    return attn


def liger_enabled(cfg) -> bool:
    """train.liger_kernel resolved (danlu.runplan decides; this machine's probes)."""
    return runplan.liger_enabled(cfg, lambda: cuda_available() and liger_installed())


def check(cfg) -> None:
    """Refuse, at config time, levers this machine or run cannot have."""
    if cfg.train.liger_kernel is True:
        if not cuda_available():
            raise ConfigError("Liger kernels are Triton kernels for CUDA GPUs; this machine has no CUDA GPU",
                              where="train.liger_kernel",
                              hint="set train.liger_kernel: auto (on wherever it can run) or false")
        if not liger_installed():
            raise ConfigError("train.liger_kernel: true needs the liger-kernel package, which is not installed",
                              where="train.liger_kernel",
                              hint="pip install 'danlu[gpu]' (or pip install 'liger-kernel>=0.5'), or set it to auto")
        if not uses_causal_lm_trainer(cfg):
            raise ConfigError(f"Liger kernels are applied by danlu's causal-LM trainer (stages "
                              f"{', '.join(LIGER_STAGES)}, distill in sequence mode); stage {cfg.stage!r} "
                              "trains with TRL's trainer, which swaps in Liger losses of its own",
                              where="train.liger_kernel", hint="set train.liger_kernel: auto or false")
    t = cfg.train
    if t.offload_activations and t.gradient_checkpointing and t.distributed == "fsdp":
        raise ConfigError("with train.distributed: fsdp, FSDP checkpoints activations through its own wrapper, "
                          "which does not offload them", where="train.offload_activations",
                          hint="drop train.offload_activations, or use train.offload: params to move FSDP's state to CPU")
    if cfg.model.attn_implementation == "flash_attention_2" and not _flash_loadable():
        raise ConfigError("flash_attention_2 needs a CUDA GPU and the flash-attn package",
                          where="model.attn_implementation",
                          hint="pip install flash-attn --no-build-isolation on a CUDA machine, "
                               "or set model.attn_implementation: auto (flash-attention where installed, else sdpa)")


def _flash_loadable() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return cuda_available() and bool(is_flash_attn_2_available(kernels_fallback_ok=True))


def checkpointing_kwargs(cfg) -> dict | None:
    """TrainingArguments.gradient_checkpointing_kwargs: non-reentrant checkpoints; `offload`
    (transformers' offloaded checkpointing) with train.offload_activations on CUDA."""
    t = cfg.train
    if not t.gradient_checkpointing:
        return None
    kwargs: dict = {"use_reentrant": False}
    if t.offload_activations and cuda_available():
        kwargs["offload"] = True
    return kwargs


def offload_forward(cfg) -> bool:
    """Saved activations go to host memory around the forward (no checkpointing to do it)."""
    t = cfg.train
    return bool(t.offload_activations and not t.gradient_checkpointing and cuda_available())


def forward_offload_context(cfg):
    """The context each training forward runs in: save_on_cpu(pin_memory) or nothing."""
    if not offload_forward(cfg):
        return contextlib.nullcontext()
    import torch

    return torch.autograd.graph.save_on_cpu(pin_memory=True)


def liger_arguments(cfg) -> dict:
    """TrainingArguments for Liger (empty when off)."""
    if not liger_enabled(cfg):
        return {}
    return {"use_liger_kernel": True, "liger_kernel_config": dict(LIGER_KERNELS)}


def describe(cfg, model, *, packing: str) -> dict:
    """What the run uses, for run_info.json and one log line."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    t = cfg.train
    offload = "off"
    if t.offload_activations:
        if not cuda_available():
            offload = "no-op on CPU"
        else:
            offload = "checkpointed block inputs" if t.gradient_checkpointing else "all saved activations"
    liger = liger_enabled(cfg)
    return {"attn_implementation": impl, "packing": packing,
            "liger_kernel": [k for k, on in LIGER_KERNELS.items() if on] if liger else False,
            "gradient_checkpointing": bool(t.gradient_checkpointing), "offload_activations": offload}


def count_liger_modules(model) -> int:
    """Modules Liger swapped a kernel into (it renames each one Liger*); 0 for a model type
    Liger has no kernels for."""
    return sum(1 for m in model.modules() if m._get_name().startswith("Liger"))


def log_levers(info: dict) -> None:
    liger = ", ".join(info["liger_kernel"]) if info["liger_kernel"] else "off"
    log.info("attention %s, packing %s, Liger kernels %s, gradient checkpointing %s, activation offload %s",
             info["attn_implementation"], info["packing"], liger, "on" if info["gradient_checkpointing"] else "off",
             info["offload_activations"])
