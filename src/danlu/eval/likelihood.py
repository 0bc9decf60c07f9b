"""Log-likelihoods under a model: the held-out loss and perplexity of answers (the label tokens
that training would learn), and the log-probability of each option of a multiple-choice
question."""

from __future__ import annotations

import math
from dataclasses import dataclass

IGNORE = -100


@dataclass
class HeldOut:
    loss: float  # mean negative log-likelihood per label token (nats)
    perplexity: float
    tokens: int
    per_sample: list[float]  # mean NLL per label token of each sample (nan when none)


def _forward_nll(model, rows: list[tuple[list[int], list[int]]], pad_id: int):
    """Summed NLL and label-token count per row; rows are (input_ids, labels), right-padded."""
    import torch
    import torch.nn.functional as F

    width = max(len(ids) for ids, _ in rows)
    B = len(rows)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    labels = torch.full((B, width), IGNORE, dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.long)
    for b, (x, y) in enumerate(rows):
        ids[b, :len(x)], labels[b, :len(y)], mask[b, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    device = next(model.parameters()).device
    target = labels[:, 1:].to(device)  # (B, T-1): token t+1 is predicted at position t
    counts = target.ne(IGNORE).sum(-1)
    with torch.no_grad():
        hidden = _label_hidden(model, ids.to(device), mask.to(device))
        if hidden is None:  # an output layer of another kind: every position's logits
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=IGNORE,
                                  reduction="none")
            return nll.sum(-1).tolist(), counts.tolist()
        return _label_nll(hidden[:, :-1], target, model.get_output_embeddings().weight).tolist(), counts.tolist()


def _label_hidden(model, ids, mask):
    """The output layer's input at every position (B, T, d), the model computing no logits; None
    where the output layer is not a plain linear one (models.head decides, as for training)."""
    from danlu.models.head import HeadInputCapture, fused_head_supported

    if not fused_head_supported(model):
        return None
    capture = HeadInputCapture(model)
    try:
        capture.active = True
        model(input_ids=ids, attention_mask=mask, use_cache=False)
        return capture.take()
    finally:
        capture.remove()


def _label_nll(hidden, target, weight, chunk: int = 256):
    """Summed NLL per row of the label positions only: a (tokens × vocabulary) fp32 block for the
    answers instead of for every position (gemma-3's 262k vocabulary: 1 MB per position)."""
    import torch
    import torch.nn.functional as F

    keep = target.ne(IGNORE)
    h, t = hidden[keep], target[keep]
    row = keep.nonzero()[:, 0]
    sums = torch.zeros(target.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, len(t), chunk):
        logits = (h[s:s + chunk] @ weight.t()).float()
        sums.index_add_(0, row[s:s + chunk], F.cross_entropy(logits, t[s:s + chunk], reduction="none"))
    return sums


def held_out_loss(loaded, conversations, *, max_length: int = 2048, batch_size: int = 8) -> HeldOut:
    """Token-weighted loss on the assistant turns of `conversations` (data.sample.Conversation),
    tokenised exactly as training tokenises them (the model's own template)."""
    from danlu.chat.templates import resolve_template
    from danlu.data.encode import encode_conversation

    tpl = resolve_template(loaded.tokenizer, "auto")
    if getattr(loaded, "processor", None) is not None:
        return _vision_held_out(loaded, conversations, tpl, max_length)
    encoded = [encode_conversation(c, tpl) for c in conversations]
    rows = [(e.input_ids[:max_length], e.labels[:max_length]) for e in encoded]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # similar lengths share a batch
    sums, counts = [0.0] * len(rows), [0] * len(rows)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        s, n = _forward_nll(loaded.model, [rows[j] for j in chunk], pad)
        for j, a, b in zip(chunk, s, n):
            sums[j], counts[j] = a, int(b)
    total = sum(counts)
    loss = sum(sums) / total if total else float("nan")
    per = [a / b if b else float("nan") for a, b in zip(sums, counts)]
    return HeldOut(loss, math.exp(loss) if total else float("nan"), total, per)


def _vision_held_out(loaded, conversations, tpl, max_length: int) -> HeldOut:
    """held_out_loss for a vision-language model: each conversation encoded as training encodes it
    (data.vlm: the processor's input ids, labels on the answers only, image tensors), one at a time."""
    import torch

    from danlu.data.vlm import encode_vlm

    sums, counts = [], []
    device = loaded.model.device
    for conv in conversations:
        enc = encode_vlm(conv, tpl, loaded.processor)
        ids = torch.tensor([enc.input_ids[:max_length]], device=device)
        labels = torch.tensor([enc.labels[:max_length]], device=device)
        extra = {k: (v.to(device, loaded.model.dtype) if v.is_floating_point() else v.to(device))
                 for k, v in enc.extra.items() if torch.is_tensor(v)}
        extra = {k: (v[None] if k in ("mm_token_type_ids", "token_type_ids") else v) for k, v in extra.items()}
        with torch.no_grad():
            logits = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        keep = target != -100
        sums.append(float((nll * keep).sum()))
        counts.append(int(keep.sum()))
    total = sum(counts)
    loss = sum(sums) / total if total else float("nan")
    per = [a / b if b else float("nan") for a, b in zip(sums, counts)]
    return HeldOut(loss, math.exp(loss) if total else float("nan"), total, per)


def option_logprobs(model, context: list[int], options: list[list[int]]) -> list[tuple[float, int]]:
    """(summed log-probability, number of tokens) of each option continuing `context`.
    When every option is one token (the letters A/B/C/D), one forward pass reads them all."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        if all(len(o) == 1 for o in options):
            logits = model(input_ids=torch.tensor([context], device=device), use_cache=False).logits[0, -1]
            logp = torch.log_softmax(logits.float(), -1)
            return [(float(logp[o[0]]), 1) for o in options]
        rows = [context + o for o in options]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, :len(r)], mask[b, :len(r)] = torch.tensor(r), 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        logp = torch.log_softmax(logits.float(), -1)
    out = []
    for b, o in enumerate(options):
        start = len(context)  # option token k sits at start+k and is predicted at start+k-1
        total = sum(float(logp[b, start + k - 1, t]) for k, t in enumerate(o))
        out.append((total, len(o)))
    return out
