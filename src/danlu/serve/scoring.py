"""Log-probabilities for the API: one forward pass over prompt + generated ids gives the
log-probability of every token after the first (and the `top` most likely tokens at each
position), computed exactly as `danlu eval` computes option log-likelihoods (fp32 log_softmax
over the model's whole output row), so an lm-eval log-likelihood task scored through
`danlu serve` equals the in-process score.

Shapes: OpenAI's legacy completions `logprobs` (tokens, token_logprobs, top_logprobs,
text_offset; with `echo` the prompt's tokens too, the first one None) and the chat completions
`logprobs.content` list (token, logprob, bytes, top_logprobs)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LOGPROBS = 20  # top-k bound for both endpoints (OpenAI: 5 for completions, 20 for chat)


@dataclass
class Scored:
    logprobs: list[float]  # of ids[1:], each given the ids before it
    top: list[list[tuple[int, float]]]  # the `top` most likely (id, logprob) at each of those positions


def score_ids(model, ids: list[int], top: int, vocab: int, forward_kwargs: dict) -> Scored:
    """One unpadded forward over ids; `vocab` limits top-k candidates to real tokens (padded
    model rows are never listed)."""
    import torch

    with torch.inference_mode():
        x = torch.tensor([ids], device=model.device)
        logits = model(input_ids=x, use_cache=False, **forward_kwargs).logits[0, :-1]
        logp = torch.log_softmax(logits.float(), -1)
        target = torch.tensor(ids[1:], device=logp.device)
        chosen = logp.gather(1, target[:, None])[:, 0].tolist()
        pairs = [[] for _ in chosen]
        if top > 0 and chosen:
            values, indices = logp[:, :vocab].topk(top, dim=-1)
            pairs = [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    return Scored(chosen, pairs)


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The bytes a token stands for: exact for byte-level BPE (GPT-2's byte ↔ character table),
    else its decoded text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = _byte_decoder(bytes_to_unicode)
    raw = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(raw, str) and raw and all(c in table for c in raw):
        return bytes(table[c] for c in raw)
    return tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")


def _byte_decoder(bytes_to_unicode, _cache={}):  # noqa: B006 — one table per process
    if not _cache:
        _cache.update({c: b for b, c in bytes_to_unicode().items()})
    return _cache


def _piece(tokenizer, token_id: int) -> str:
    """A token as text; part of a UTF-8 character is written as OpenAI does (`bytes:\\xe4\\xb8`),
    so top_logprobs keys stay distinct."""
    data = token_bytes(tokenizer, token_id)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def legacy_logprobs(tokenizer, ids: list[int], scored: Scored, start: int, offset0: int = 0) -> dict:
    """OpenAI legacy completions `logprobs` for ids[start:] (start 0 with echo: the first token
    has no logprob). text_offset counts characters of the decoded tokens from offset0."""
    tokens = [_piece(tokenizer, t) for t in ids]
    lps: list[float | None] = [None, *scored.logprobs]
    tops: list[dict | None] = [None, *({_piece(tokenizer, i): v for i, v in pairs} for pairs in scored.top)]
    offsets, at = [], offset0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"tokens": tokens[start:], "token_logprobs": lps[start:], "top_logprobs": tops[start:],
            "text_offset": offsets[start:]}


def chat_logprobs(tokenizer, ids: list[int], scored: Scored, start: int) -> dict:
    """Chat completions `logprobs` for the generated ids[start:] (start = prompt length >= 1)."""

    def item(token_id: int, logprob: float) -> dict:
        return {"token": _piece(tokenizer, token_id), "logprob": logprob,
                "bytes": list(token_bytes(tokenizer, token_id))}

    content = []
    for pos in range(start, len(ids)):
        entry = item(ids[pos], scored.logprobs[pos - 1])
        entry["top_logprobs"] = [item(i, v) for i, v in scored.top[pos - 1]]
        content.append(entry)
    return {"content": content, "refusal": None}
