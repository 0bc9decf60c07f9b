"""Causal-LM loss on the positions that carry a label only.

Logits are computed only where some row of the batch has a label (`logits_to_keep` with an
index tensor), so the full-vocabulary logits of prompt and pad tokens are never made. The sum
of token losses is divided by `num_items_in_batch`, the loss tokens of the whole accumulated
step (and all ranks), so batch 8 × accumulation 1 trains like batch 1 × accumulation 8."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

IGNORE = -100


def accepts_logits_to_keep(model) -> bool:
    base = model
    for attr in ("module", "base_model", "model"):  # DDP / PEFT wrappers
        if "logits_to_keep" in inspect.signature(base.forward).parameters:
            return True
        base = getattr(base, attr, base)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def causal_lm_loss(model, inputs: dict, num_items_in_batch=None, *, keep_logits: bool = True, capture=None):
    """(loss, number of label tokens in this micro-batch, outputs). With `capture` (an
    OutputCapture on the model's output layer) the loss is the chunked linear + cross-entropy
    and no logits are made; outputs.logits is then empty."""
    shift = inputs.pop("shift_labels")
    inputs.pop("labels", None)
    if capture is not None:
        return _fused_loss(model, inputs, shift, num_items_in_batch, capture)
    if keep_logits:
        keep = shift.ne(IGNORE).any(0).nonzero().squeeze(-1)  # (K,) positions with any label
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        targets = shift[:, keep]  # (B, K)
    else:
        outputs = model(**inputs, use_cache=False)
        targets = shift
    logits = outputs.logits  # (B, K, V)
    if logits.shape[1] > targets.shape[1]:  # prompt tuning / P-tuning put virtual tokens in front
        logits = logits[:, logits.shape[1] - targets.shape[1]:]
    n_tokens = targets.ne(IGNORE).sum()
    loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(loss_sum.device)
    return loss_sum / denom, n_tokens, outputs


def _fused_loss(model, inputs, shift, num_items_in_batch, capture):
    from danlu.train.fused_ce import chunked_linear_ce

    keep = shift.ne(IGNORE).any(0).nonzero().squeeze(-1)  # (K,)
    capture.active = True
    try:
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
    finally:
        capture.active = False
    hidden = capture.take()  # (B, K, d)
    targets = shift[:, keep]  # (B, K)
    valid = targets.ne(IGNORE)
    n_tokens = valid.sum()
    denom = num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(hidden.device)
    loss = chunked_linear_ce(hidden[valid], capture.head.weight, targets[valid], denom,
                             workspace=capture.workspace)
    return loss, n_tokens, outputs
