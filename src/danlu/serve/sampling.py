"""Next-token choice per row of a batch: each row has its own temperature, top_p, presence and
frequency penalties (OpenAI's definitions) and random generator (seeded per request), so a
request samples the same tokens whatever else shares its batch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    constraint: object | None = None  # danlu.serve.structured.Constraint: allowed next tokens (response_format)


def penalise(row, generated: list[int], presence: float, frequency: float):
    """OpenAI: logit[t] -= frequency * count(t) + presence * (count(t) > 0), over generated tokens."""
    import torch

    if not generated or (presence == 0 and frequency == 0):
        return row
    ids, counts = torch.unique(torch.tensor(generated, device=row.device), return_counts=True)
    row = row.clone()
    row[ids] -= frequency * counts.to(row.dtype) + presence
    return row


def top_p_filter(probs, top_p: float):
    """Keep the smallest set of tokens whose probability mass reaches top_p (at least one)."""
    import torch

    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(descending=True)
    before = sorted_p.cumsum(0) - sorted_p  # mass of the tokens ranked above each token
    sorted_p[before >= top_p] = 0.0
    out = torch.zeros_like(probs)
    out[order] = sorted_p
    return out / out.sum()


def constrain(logits, rows):
    """Rows with a constraint (response_format) keep only the tokens it allows."""
    import torch

    if all(getattr(row.params, "constraint", None) is None for row in rows):
        return logits
    logits = logits.clone()
    for i, row in enumerate(rows):
        if row.params.constraint is not None:
            allowed = torch.tensor(row.params.constraint.allowed(row.request.prompt, row.tokens), dtype=torch.long)
            keep = torch.full_like(logits[i], float("-inf"))
            keep[allowed.to(logits.device)] = 0.0
            logits[i] += keep
    return logits


def choose(logits, rows) -> list[int]:
    """logits: (B, V) float32; rows: objects with .params, .tokens and .generator (and .request.prompt
    for rows with a constraint)."""
    import torch

    logits = constrain(logits, rows)
    out = logits.argmax(-1).tolist()
    for i, row in enumerate(rows):
        p = row.params
        if p.temperature == 0 and p.presence_penalty == 0 and p.frequency_penalty == 0:
            continue
        x = penalise(logits[i], row.tokens, p.presence_penalty, p.frequency_penalty)
        if p.temperature == 0:
            out[i] = int(x.argmax())
            continue
        probs = top_p_filter(torch.softmax(x / p.temperature, dim=-1), p.top_p)
        out[i] = int(torch.multinomial(probs, 1, generator=row.generator))
    return out
