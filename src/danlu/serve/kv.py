"""The running batch's KV cache: rows join (left-padded to a common length) and leave between
decoding steps. Rows are always "padding, then real tokens", which is what transformers'
attention masks expect of left padding; positions are passed explicitly per row, so padding
never shifts RoPE. Uses the public DynamicCache constructor and its `layers` (keys/values of shape
(B, H, T, D)); only full-attention DynamicLayers are built (no sliding-window trimming)."""

from __future__ import annotations


def _kv(cache) -> list[tuple]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(x, width: int, dim: int):
    import torch

    if width == 0:
        return x
    shape = list(x.shape)
    shape[dim] = width
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def merge(cache_a, mask_a, cache_b, mask_b):
    """Rows of b appended after rows of a; the shorter history is left-padded. mask: (B, T) long."""
    import torch
    from transformers import DynamicCache

    if cache_a is None:
        return cache_b, mask_b
    ta, tb = mask_a.shape[1], mask_b.shape[1]
    t = max(ta, tb)
    layers = []
    for (ka, va), (kb, vb) in zip(_kv(cache_a), _kv(cache_b)):
        k = torch.cat([_left_pad(ka, t - ta, 2), _left_pad(kb, t - tb, 2)], dim=0)
        v = torch.cat([_left_pad(va, t - ta, 2), _left_pad(vb, t - tb, 2)], dim=0)
        layers.append((k, v))
    mask = torch.cat([_left_pad(mask_a, t - ta, 1), _left_pad(mask_b, t - tb, 1)], dim=0)
    return DynamicCache(ddp_cache_data=layers), mask


def select(cache, mask, keep: list[int]):
    """Keep only the rows `keep` (finished or cancelled rows leave the batch)."""
    import torch

    idx = torch.tensor(keep, dtype=torch.long, device=mask.device)
    cache.batch_select_indices(idx)
    return cache, mask[idx]


def trim_left(cache, mask, min_width: int = 16):
    """Drop leading columns that are padding in every row (once there are at least min_width)."""
    from transformers import DynamicCache

    lead = int((mask.cumsum(1) == 0).sum(1).min())
    if lead < min_width:
        return cache, mask
    layers = [(k[:, :, lead:, :], v[:, :, lead:, :]) for k, v in _kv(cache)]
    return DynamicCache(ddp_cache_data=layers), mask[:, lead:]
