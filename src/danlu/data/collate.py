"""Batches for causal-LM training.

Both collators emit `shift_labels` (the label of the *next* token at each position, -100 at
each sample's last position), so the loss never asks a sample to predict its neighbour's first
token, and `labels` only so the Trainer can count loss tokens for gradient accumulation.

- PaddingCollator: one row per sample, right-padded, 2D attention mask.
- PackingCollator: the micro-batch's samples packed into rows as wide as its longest sample,
  with position ids restarting per sample and a 4D block-diagonal causal mask (B, 1, L, L),
  so no token attends across a sample boundary (restarted positions alone do not isolate
  samples with sdpa/eager attention: measured). Same samples per step as padding, never more
  token slots than padding, and the masked attention of a row stays O(longest²), not
  O(max_length²).
- VarlenCollator (flash-attention models only): the micro-batch's samples concatenated into
  one row (1, N), no padding and no attention mask; position ids restart per sample, and the
  sample boundaries go to flash-attention's varlen kernel as `cu_seq_lens_q/k` (int32, S+1)
  and `max_length_q/k` (Python ints: no device sync). transformers passes these keys down to
  its flash-attention path only; sdpa/eager would ignore them and attend across samples, so
  `packing_collator` picks this collator only for a flash-attention model."""

from __future__ import annotations

import torch

IGNORE = -100


def _shifted(labels: list[int]) -> list[int]:
    return labels[1:] + [IGNORE]


class PaddingCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id, self.multiple = pad_token_id, pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        B = len(features)
        ids = torch.full((B, width), self.pad_id, dtype=torch.long)
        labels = torch.full((B, width), IGNORE, dtype=torch.long)
        shift = torch.full((B, width), IGNORE, dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.long)
        for b, f in enumerate(features):
            n = len(f["input_ids"])
            ids[b, :n] = torch.tensor(f["input_ids"])
            labels[b, :n] = torch.tensor(f["labels"])
            shift[b, :n] = torch.tensor(_shifted(f["labels"]))
            mask[b, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "shift_labels": shift}


def first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of sample indices, longest first, each bin's total ≤ capacity (a longer sample
    gets a bin of its own)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(max(capacity, lengths[i]) - lengths[i])
    return [sorted(b) for b in bins]


class PackingCollator:
    def __init__(self, pad_token_id: int, max_length: int):
        self.pad_id, self.max_length = pad_token_id, max_length

    def __call__(self, features: list[dict]) -> dict:
        lengths = [len(f["input_ids"]) for f in features]
        rows = first_fit(lengths, min(self.max_length, max(lengths)))
        width = max(sum(lengths[i] for i in row) for row in rows)
        R = len(rows)
        ids = torch.full((R, width), self.pad_id, dtype=torch.long)
        labels = torch.full((R, width), IGNORE, dtype=torch.long)
        shift = torch.full((R, width), IGNORE, dtype=torch.long)
        pos = torch.zeros((R, width), dtype=torch.long)
        mask = torch.zeros((R, 1, width, width), dtype=torch.bool)
        for r, row in enumerate(rows):
            off = 0
            for i in row:
                f, n = features[i], lengths[i]
                ids[r, off:off + n] = torch.tensor(f["input_ids"])
                labels[r, off:off + n] = torch.tensor(f["labels"])
                shift[r, off:off + n] = torch.tensor(_shifted(f["labels"]))
                pos[r, off:off + n] = torch.arange(n)
                mask[r, 0, off:off + n, off:off + n] = torch.ones(n, n, dtype=torch.bool).tril_()
                off += n
            pad = torch.arange(off, width)
            mask[r, 0, pad, pad] = True  # pad rows attend to themselves: no all-masked row, no NaN
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels,
                "shift_labels": shift}


class VarlenCollator:
    """Padding-free packing for flash-attention: one row, boundaries as cu_seq_lens."""

    def __call__(self, features: list[dict]) -> dict:
        lengths = [len(f["input_ids"]) for f in features]
        ids = torch.tensor([t for f in features for t in f["input_ids"]], dtype=torch.long)[None]  # (1, N)
        labels = torch.tensor([t for f in features for t in f["labels"]], dtype=torch.long)[None]
        shift = torch.tensor([t for f in features for t in _shifted(list(f["labels"]))], dtype=torch.long)[None]
        pos = torch.cat([torch.arange(n) for n in lengths])[None]
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(lengths).cumsum(0)
        longest = max(lengths)
        return {"input_ids": ids, "position_ids": pos, "labels": labels, "shift_labels": shift,
                "cu_seq_lens_q": cu, "cu_seq_lens_k": cu.clone(), "max_length_q": longest, "max_length_k": longest}


def is_flash_attention(model) -> bool:
    """True when the model's attention reads varlen rows (cu_seq_lens / max_length): a
    flash-attention kernel (flash_attention_2/3 or a hub flash kernel), or danlu's per-sample
    causal SDPA for CPUs (models/varlen_sdpa.py)."""
    from danlu.models.varlen_sdpa import NAME

    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None) or ""
    return "flash" in impl or impl == NAME


def packing_collator(pad_token_id: int, max_length: int, model):
    """The packing collator for this model: varlen rows for flash-attention and danlu_varlen_sdpa,
    else rows with a 4D block-diagonal mask (sdpa, eager)."""
    if is_flash_attention(model):
        return VarlenCollator()
    return PackingCollator(pad_token_id, max_length)
