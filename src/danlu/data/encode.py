"""Conversation → (input_ids, labels). The ids are exactly the tokenizer's own chat-template
output; labels are -100 except on assistant turns and the token that ends each of them (EOS
or the template's turn end), which is learned even when pad == eos.

How: render the whole conversation once; for each assistant turn, render the conversation up
to it (with the generation prompt) to find where its text starts; tokenise the whole text with
character offsets and label the tokens that overlap an assistant span."""

from __future__ import annotations

from dataclasses import dataclass

from danlu.chat.messages import Conversation, RowError, Text
from danlu.chat.templates import PROBE, ChatTemplate
from danlu.chat.tools import with_call_ids

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_labels(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class SampleDropped(Exception):
    """A sample that tokenised fine but cannot train (over-long under `drop`, or no labels)."""


def assistant_spans(conv: Conversation, tpl: ChatTemplate, full: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of each assistant turn in `full`, end token included."""
    spans = []
    msgs = conv.messages
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prefix = tpl.render(msgs[:i], tools=conv.tools, add_generation_prompt=True)
        upto = tpl.render(msgs[: i + 1], tools=conv.tools)
        if full.startswith(prefix) and full.startswith(upto) and len(upto) > len(prefix):
            start, end = len(prefix), len(upto)
        else:  # a template that rewrites earlier turns (tools before the last user turn, dropped reasoning ...)
            start, end = _diff_span(msgs, i, tpl, conv.tools, full)
            rest = full[end:]
            if rest.lstrip(" ").startswith(tpl.turn_end):
                end += rest.index(tpl.turn_end) + len(tpl.turn_end)
        # stop right after the turn-end token (a trailing "\n" belongs to no one)
        k = full.find(tpl.turn_end, start, end) if tpl.turn_end_in_template else -1
        if k >= 0:
            end = k + len(tpl.turn_end)
        elif not tpl.turn_end_in_template:  # EOS goes right after the answer, before the template's whitespace
            end = start + len(full[start:end].rstrip())
        spans.append((start, end))
    return spans


def _diff_span(msgs: list[dict], i: int, tpl: ChatTemplate, tools, full: str) -> tuple[int, int]:
    """Where assistant turn i is in `full`: render the conversation with that turn replaced by a
    probe text; the characters that differ from `full` are the turn's (its text or its tool calls,
    with whatever the template writes around them)."""
    other = tpl.render([*msgs[:i], {"role": "assistant", "content": PROBE}, *msgs[i + 1:]], tools=tools)
    limit = min(len(full), len(other))
    start = 0
    while start < limit and full[start] == other[start]:
        start += 1
    tail = 0
    while tail < limit - start and full[-1 - tail] == other[-1 - tail]:
        tail += 1
    if PROBE not in other or len(full) - tail <= start:
        raise RowError(f"cannot locate assistant turn {i + 1} in the rendered template")
    return start, len(full) - tail


def encode_conversation(
    conv: Conversation,
    tpl: ChatTemplate,
    *,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> Encoded:
    tok = tpl.tokenizer
    conv = Conversation(with_call_ids(conv.messages), conv.tools, conv.where)  # ids fixed before any render
    full = tpl.render(conv.messages, tools=conv.tools)
    spans = assistant_spans(conv, tpl, full)
    if mask_history:
        spans = spans[-1:]
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    input_ids: list[int] = []
    labels: list[int] = []
    span_idx = 0
    for tid, (s, e) in zip(ids, offsets):
        while span_idx < len(spans) and s >= spans[span_idx][1]:
            if not tpl.turn_end_in_template:  # the template wrote no end token: append EOS, learned
                input_ids.append(tok.eos_token_id)
                labels.append(tok.eos_token_id)
            span_idx += 1
        # a token overlapping the span is the answer's (a template whose prompt ends in a space
        # gets that space merged into the answer's first token by byte-level BPE)
        inside = span_idx < len(spans) and s < spans[span_idx][1] and e > spans[span_idx][0]
        input_ids.append(tid)
        labels.append(tid if (inside or train_on_prompt) else IGNORE)
    if not tpl.turn_end_in_template:
        for _ in range(span_idx, len(spans)):
            input_ids.append(tok.eos_token_id)
            labels.append(tok.eos_token_id)
    return Encoded(_dedupe_bos(input_ids, tok), _dedupe_bos(labels, tok, like=input_ids))


def _dedupe_bos(seq: list[int], tok, like: list[int] | None = None) -> list[int]:
    """Exactly one BOS: a template that writes bos_token plus a tokenizer that adds one."""
    bos = getattr(tok, "bos_token_id", None)
    ref = like if like is not None else seq
    if bos is not None and len(ref) > 1 and ref[0] == bos and ref[1] == bos:
        return seq[1:]
    return seq


def encode_text(sample: Text, tok, *, add_eos: bool = True) -> Encoded:
    """Plain text: every token is learned; BOS if the tokenizer adds one, EOS at the end."""
    ids = tok(sample.text, add_special_tokens=True)["input_ids"]
    if add_eos and tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
        ids = ids + [tok.eos_token_id]
    return Encoded(list(ids), list(ids))


def fit_length(enc: Encoded, max_length: int, overlong: str, where: str) -> Encoded:
    """Apply data.overlong; a sample left with no labels is dropped (never a NaN loss)."""
    if len(enc) > max_length:
        if overlong == "drop":
            raise SampleDropped(f"over-long: {len(enc)} tokens > train.max_length {max_length}")
        if overlong == "error":
            from danlu.errors import DataError

            raise DataError(
                f"sample has {len(enc)} tokens, more than train.max_length {max_length}",
                where=where,
                hint="raise train.max_length, or set data.overlong: truncate | drop",
            )
        enc = Encoded(enc.input_ids[:max_length], enc.labels[:max_length])
    if enc.num_labels == 0:
        raise SampleDropped("masked to nothing: no token carries a label (after truncation)")
    return enc
