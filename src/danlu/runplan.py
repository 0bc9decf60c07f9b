"""The run decisions `danlu train` and `danlu plan` share, made once, here, from the config and
(where a decision depends on the machine) a probe of it. Torch-free at import: the probes import
torch or transformers only when called. Both train/ and plan/ read this module; it reads neither.

  stages     which stages train with danlu's own causal-LM trainer (fused loss, Liger kernels)
  packing    data.packing, unless the method changes the sequence inside the model (virtual tokens)
  attention  model.attn_implementation: auto → flash_attention_2 on CUDA with flash-attn and
             16-bit compute; else transformers' default (sdpa)
  fused loss train.fused_loss on a causal-LM stage, a method that keeps only label positions and
             an output layer of a plain linear kind (SIMPLE_HEADS); the chunk size per vocabulary
  liger      train.liger_kernel: auto → on with CUDA, liger-kernel installed and a causal-LM stage
"""

from __future__ import annotations

import importlib.util
from typing import Callable

CAUSAL_LM_STAGES = ("sft", "pretrain")  # stages whose trainer is danlu's CausalLMTrainer
# architectures whose output layer is a plain bias-free Linear applied to the final hidden state
# (no logit scaling; soft-capping is checked per config): the fused loss is exact for them.
# gemma3_text (gemma-3-270m/1b): without the fused loss its 262k vocabulary made 4 × 1024 tokens
# of fp32 logits and their cross-entropy buffers (~14 GB) on top of a 0.5 GB model.
SIMPLE_HEADS = {"llama", "qwen2", "qwen3", "mistral", "mixtral", "qwen2_moe", "qwen3_moe", "phi3", "gemma",
                "gemma3_text"}
LOGITS_BUDGET = 64 * 2**20  # bytes of fp32 logits per chunk of the fused loss


# ---- probes of this machine ---------------------------------------------------------------------
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def flash_attn_installed() -> bool:
    """flash-attn 2 importable on a CUDA machine (transformers' own test)."""
    from transformers.utils import is_flash_attn_2_available

    return bool(is_flash_attn_2_available())


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def flash_usable() -> bool:
    return cuda_available() and flash_attn_installed()


# ---- decisions ----------------------------------------------------------------------------------
def uses_causal_lm_trainer(cfg) -> bool:
    """The stage trains with danlu's CausalLMTrainer (distill does in sequence mode)."""
    if cfg.stage in CAUSAL_LM_STAGES:
        return True
    return cfg.stage == "distill" and getattr(cfg.stage_options(), "mode", None) == "sequence"


def packing_applies(cfg) -> bool:
    """data.packing, unless the method cannot pack (virtual tokens lengthen each row in the model)."""
    return bool(cfg.data.packing and getattr(type(cfg.method), "supports_packing", True))


VARLEN_SDPA = "danlu_varlen_sdpa"  # models.varlen_sdpa: padding-free packed rows without flash-attention


def packs_rows(cfg, vision: bool = False) -> bool:
    """danlu's causal-LM trainer packs this run's batches (a vision-language model pads them)."""
    return packing_applies(cfg) and cfg.stage in CAUSAL_LM_STAGES and not vision


def resolve_attention(requested: str, precision: str, flash: Callable[[], bool] = flash_usable, *,
                      packing: bool = False, cuda: bool = False) -> str:
    """The attn_implementation to load the model with ("auto": transformers' default, sdpa);
    `flash` says whether flash-attention can run here (asked only when it matters). Packed rows
    without flash-attention on a CPU (`packing`, not `cuda`): VARLEN_SDPA."""
    if requested != "auto":
        return requested
    if precision in ("bf16", "fp16") and flash():
        return "flash_attention_2"
    if packing and not cuda:
        return VARLEN_SDPA
    return "auto"


def fused_loss_requested(cfg) -> bool:
    """train.fused_loss with a method whose model returns logits only at label positions."""
    return bool(getattr(cfg.train, "fused_loss", False)) and getattr(type(cfg.method), "supports_logits_to_keep", True)


def fused_loss_applies(cfg, model_type: str) -> bool:
    """The fused loss runs: requested, a causal-LM stage (sft, pretrain) and a plain output layer."""
    return fused_loss_requested(cfg) and cfg.stage in CAUSAL_LM_STAGES and model_type in SIMPLE_HEADS


def loss_chunk(vocab: int) -> int:
    """Tokens per chunk of the fused loss: a power of two whose fp32 logits fit LOGITS_BUDGET (512
    for a 32k vocabulary, 128 for Qwen's 152k), at least 128 so the projection stays a large matmul."""
    fit = max(1, LOGITS_BUDGET // (4 * vocab))
    return min(4096, max(128, 1 << (fit.bit_length() - 1)))


def liger_enabled(cfg, available: Callable[[], bool] | None = None) -> bool:
    """train.liger_kernel resolved: auto = on with CUDA, liger-kernel installed (`available`) and
    a stage trained by danlu's own causal-LM trainer."""
    setting = cfg.train.liger_kernel
    if setting is False:
        return False
    if setting is True:
        return True
    available = available or (lambda: cuda_available() and liger_installed())
    return available() and uses_causal_lm_trainer(cfg)
