"""Conversation → (input_ids, labels). The ids are exactly the tokenizer's own chat-template
output; labels are -100 except on assistant turns and the token that ends each of them (EOS
or the template's turn end), which is learned even when pad == eos.

How: render the whole conversation once; for each assistant turn, render the conversation up
to it (with the generation prompt) to find where its text starts; tokenise the whole text with
character offsets and label the tokens that overlap an assistant span.

Bounded work: given `max_length`, no text longer than `char_budget` characters is rendered or
tokenised (that many characters certainly hold more than max_length tokens, so the cut changes
nothing that survives truncation), and only the assistant turns that start inside the kept
tokens are located, so a 50 MB row or a 20,000-turn conversation costs what max_length allows."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from danlu.chat.messages import Conversation, RowError, Text
from danlu.chat.templates import PROBE, ChatTemplate
from danlu.chat.tools import with_call_ids

IGNORE = -100
MARGIN = 16  # tokens kept past max_length when cutting (BOS dedupe, merges at the cut)
_LONGEST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    cut: bool = False  # the text was cut before tokenising: len() is a lower bound of the full length

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_labels(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class SampleDropped(Exception):
    """A sample that tokenised fine but cannot train (over-long under `drop`, or no labels)."""


def char_budget(tok, max_length: int) -> int:
    """A number of characters that certainly holds more than max_length (+ a margin) tokens: no
    token covers more characters than the longest entry of the vocabulary."""
    try:
        longest = _LONGEST[tok]
    except (KeyError, TypeError):
        longest = max(16, max((len(t) for t in tok.get_vocab()), default=16))
        try:
            _LONGEST[tok] = longest
        except TypeError:
            pass
    return (max_length + MARGIN) * longest


def assistant_spans(conv: Conversation, tpl: ChatTemplate, full: str, *, only: list[int] | None = None,
                    stop: int | None = None) -> list[tuple[int, int]]:
    """Character spans [start, end) of each assistant turn in `full`, end token included; of the
    turns at message indices `only` if given; none from the first turn starting at or after `stop`."""
    spans = []
    msgs = conv.messages
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or (only is not None and i not in only):
            continue
        prefix = tpl.render(msgs[:i], tools=conv.tools, add_generation_prompt=True)
        if stop is not None and full.startswith(prefix) and len(prefix) >= stop:
            break  # this turn and every later one start past the tokens that are kept
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
    max_length: int | None = None,
) -> Encoded:
    """ids and labels of a conversation; with `max_length`, work is bounded (see the module doc):
    the result then holds at least the first max_length tokens exactly, and `cut` says it stops early."""
    tok = tpl.tokenizer
    budget = char_budget(tok, max_length) if max_length else None
    conv = Conversation(_cut_contents(with_call_ids(conv.messages), budget), conv.tools, conv.where)
    full = tpl.render(conv.messages, tools=conv.tools)
    ids, offsets, cut = _tokenize_bounded(tok, full, budget, max_length)
    stop = offsets[max_length + 1][1] if cut and len(offsets) > max_length + 1 else None
    last = [max((i for i, m in enumerate(conv.messages) if m["role"] == "assistant"), default=-1)]
    spans = assistant_spans(conv, tpl, full, only=last if mask_history else None, stop=stop)
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
    return Encoded(_dedupe_bos(input_ids, tok), _dedupe_bos(labels, tok, like=input_ids), cut=cut)


def _cut_contents(messages: list[dict], budget: int | None) -> list[dict]:
    """Each message's text cut to `budget` characters: past that, nothing of the row is kept."""
    if budget is None or all(len(m.get("content") or "") <= budget for m in messages):
        return messages
    return [{**m, "content": m["content"][:budget]} if len(m.get("content") or "") > budget else m for m in messages]


def _tokenize_bounded(tok, text: str, budget: int | None, max_length: int | None):
    """(ids, offsets, cut) of `text`, tokenising only its first `budget` characters when it is
    longer (then more than max_length tokens are certain; checked, else the whole text)."""
    if budget is not None and len(text) > budget:
        enc = tok(text[:budget], add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) > max_length + 1:
            return enc["input_ids"], enc["offset_mapping"], True
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], enc["offset_mapping"], False


def _dedupe_bos(seq: list[int], tok, like: list[int] | None = None) -> list[int]:
    """Exactly one BOS: a template that writes bos_token plus a tokenizer that adds one."""
    bos = getattr(tok, "bos_token_id", None)
    ref = like if like is not None else seq
    if bos is not None and len(ref) > 1 and ref[0] == bos and ref[1] == bos:
        return seq[1:]
    return seq


def encode_text(sample: Text, tok, *, add_eos: bool = True, max_length: int | None = None) -> Encoded:
    """Plain text: every token is learned; BOS if the tokenizer adds one, EOS at the end. With
    `max_length`, only the first char_budget characters are tokenised (`cut` says so)."""
    text = sample.text
    if max_length and len(text) > char_budget(tok, max_length):
        ids = tok(text[:char_budget(tok, max_length)], add_special_tokens=True)["input_ids"]
        if len(ids) > max_length + 1:
            return Encoded(list(ids), list(ids), cut=True)
    ids = tok(text, add_special_tokens=True)["input_ids"]
    if add_eos and tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
        ids = ids + [tok.eos_token_id]
    return Encoded(list(ids), list(ids))


def fit_length(enc: Encoded, max_length: int, overlong: str, where: str) -> Encoded:
    """Apply data.overlong; a sample left with no labels is dropped (never a NaN loss)."""
    if len(enc) > max_length:
        size = f"more than {len(enc)}" if enc.cut else str(len(enc))
        if overlong == "drop":
            raise SampleDropped(f"over-long: {size} tokens > train.max_length {max_length}")
        if overlong == "error":
            from danlu.errors import DataError

            raise DataError(
                f"sample has {size} tokens, more than train.max_length {max_length}",
                where=where,
                hint="raise train.max_length, or set data.overlong: truncate | drop",
            )
        enc = Encoded(enc.input_ids[:max_length], enc.labels[:max_length])
    if enc.num_labels == 0:
        raise SampleDropped("masked to nothing: no token carries a label (after truncation)")
    return enc
