"""Padding-free packed attention without flash-attention (issue 24): `danlu_varlen_sdpa`.

On a CPU (no flash-attn package), packed rows used to carry a 4D block-diagonal mask: every
row is as wide as the batch's longest sample, and SDPA computes all L x L scores of it — the
mask both wastes the blocks between samples and stops the kernel from skipping the causal upper
half. torch.profiler put attention at 24% of a CPU bench step that way.

This attention function, registered with transformers' own `AttentionInterface` (and
`AttentionMaskInterface`, as sdpa), reads the same varlen batch flash-attention reads
(data/collate.py VarlenCollator: one row, boundaries in `cu_seq_lens_q`) and runs causal SDPA
on each sample alone: only the lower triangle of each sample is computed, and no token is
padding. Without `cu_seq_lens_q` (a padded batch, generation) it is transformers' sdpa."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from danlu.runplan import VARLEN_SDPA as NAME


def varlen_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    """transformers' attention-function signature: query (B, H, L, D), key/value (B, Hkv, L, D);
    returns ((B, L, H, D), None)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or not getattr(module, "is_causal", True) or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = cu.tolist()
    parts = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                            scale=scaling, is_causal=True)
             for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make NAME loadable as an attn_implementation (idempotent); returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_sdpa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
