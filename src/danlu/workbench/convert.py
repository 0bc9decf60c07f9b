"""`danlu data convert`: rows of any readable format → rows of another layout.

Reading goes through the FORMATS registry (auto-detected or named), so a format registered
under data/formats/ can be converted from without touching this file. Writing goes through
WRITERS, a registry of layouts; a registered format class that defines `to_row(sample)` is a
writer too. A sample of one kind can be written in a layout of another where the meaning
survives: a preference pair as a conversation (its chosen answer — DPO data as SFT data), a
conversation or a pair as a prompt (for `synth answers` or RL stages)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from danlu.chat.messages import Conversation, Labelled, Preference, Prompt, RowError, Text, Unpaired
from danlu.data.formats import FORMATS, FormatOptions, detect_format
from danlu.errors import DataError, UserError
from danlu.registry import Registry
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output, default_output, iter_good_rows

# --- samples seen as another kind ------------------------------------------------------------


def as_conversation(s) -> Conversation:
    if isinstance(s, Conversation):
        return s
    if isinstance(s, Preference):
        return Conversation(s.prompt + s.chosen, tools=s.tools)
    raise RowError(f"a {type(s).__name__.lower()} row cannot become a conversation")


def as_prompt(s) -> list[dict]:
    if isinstance(s, (Preference, Unpaired, Prompt)):
        return s.prompt
    if isinstance(s, Conversation):
        last_user = max((i for i, m in enumerate(s.messages) if m["role"] == "user"), default=-1)
        return s.messages[:last_user + 1]
    raise RowError(f"a {type(s).__name__.lower()} row has no prompt")


def _system_and_turns(messages: list[dict]) -> tuple[str | None, list[dict]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _with_system(row: dict, system: str | None) -> dict:
    return {**row, "system": system} if system else row


def _single_turn(messages: list[dict], layout: str) -> tuple[str | None, str]:
    """(system, user text) of a prompt that is one user turn (after an optional system)."""
    system, turns = _system_and_turns(messages)
    if len(turns) != 1 or turns[0]["role"] != "user":
        raise RowError(f"{layout} holds a single user turn; this prompt has {len(turns)} turns "
                       "(use a messages layout to keep them)")
    return system, turns[0]["content"]


def _only_text(answer: list[dict], layout: str) -> str:
    if len(answer) != 1 or answer[0].get("tool_calls"):
        raise RowError(f"{layout} holds one plain answer; this one has tool calls or several turns")
    return answer[0]["content"]


def _plain(messages: list[dict], layout: str) -> None:
    if any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        raise RowError(f"{layout} cannot hold tool calls or tool results (use messages or sharegpt)")


# --- writers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    name: str
    kind: str  # the sample kind it writes; others are adapted when they can be
    fn: Callable[[object], dict]

    def row(self, sample) -> dict:
        return self.fn(sample)


WRITERS: Registry = Registry("output format")


def register_writer(name: str, kind: str):
    def deco(fn):
        WRITERS.register(name)(Writer(name, kind, fn))
        return fn

    return deco


_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


def _sharegpt_turns(messages: list[dict]) -> list[dict]:
    turns = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [c["function"] for c in m["tool_calls"]]
            turns.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls,
                                                                        ensure_ascii=False)})
        else:
            turns.append({"from": _SHAREGPT_ROLE[m["role"]], "value": m.get("content") or ""})
    return turns


def _tools(row: dict, tools) -> dict:
    return {**row, "tools": json.dumps(tools, ensure_ascii=False)} if tools else row


@register_writer("messages", "conversation")
def _messages(s) -> dict:
    c = as_conversation(s)
    return {"messages": c.messages, **({"tools": c.tools} if c.tools else {})}


@register_writer("sharegpt", "conversation")
def _sharegpt(s) -> dict:
    c = as_conversation(s)
    system, turns = _system_and_turns(c.messages)
    return _tools(_with_system({"conversations": _sharegpt_turns(turns)}, system), c.tools)


@register_writer("alpaca", "conversation")
def _alpaca(s) -> dict:
    c = as_conversation(s)
    _plain(c.messages, "alpaca")
    system, turns = _system_and_turns(c.messages)
    if len(turns) % 2 or any(t["role"] != ("user", "assistant")[i % 2] for i, t in enumerate(turns)):
        raise RowError("alpaca holds user/assistant pairs; this conversation has another shape")
    history = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 2, 2)]
    row = {"instruction": turns[-2]["content"], "input": "", "output": turns[-1]["content"]}
    return _with_system({**row, **({"history": history} if history else {})}, system)


@register_writer("prompt_response", "conversation")
def _prompt_response(s) -> dict:
    c = as_conversation(s)
    _plain(c.messages, "prompt_response")
    system, turns = _system_and_turns(c.messages)
    if len(turns) != 2:
        raise RowError("prompt_response holds one question and one answer; this conversation has "
                       f"{len(turns)} turns (use messages, sharegpt or alpaca with history)")
    return _with_system({"prompt": turns[0]["content"], "response": turns[1]["content"]}, system)


@register_writer("text", "text")
def _text(s) -> dict:
    if not isinstance(s, Text):
        raise RowError(f"a {type(s).__name__.lower()} row is not plain text")
    return {"text": s.text}


@register_writer("prompt", "prompt")
def _prompt_only(s) -> dict:
    system, text = _single_turn(as_prompt(s), "prompt")
    return _with_system({"prompt": text}, system)


@register_writer("preference", "preference")
def _preference(s) -> dict:
    p = _need(s, Preference)
    system, text = _single_turn(p.prompt, "preference")
    return _with_system({"prompt": text, "chosen": _only_text(p.chosen, "preference"),
                         "rejected": _only_text(p.rejected, "preference")}, system)


@register_writer("messages_preference", "preference")
def _messages_preference(s) -> dict:
    p = _need(s, Preference)
    return {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}


@register_writer("sharegpt_preference", "preference")
def _sharegpt_preference(s) -> dict:
    p = _need(s, Preference)
    system, turns = _system_and_turns(p.prompt)
    if len(p.chosen) != 1 or len(p.rejected) != 1:
        raise RowError("sharegpt_preference holds one answer turn each for chosen and rejected")
    row = {"conversations": _sharegpt_turns(turns), "chosen": _sharegpt_turns(p.chosen)[0],
           "rejected": _sharegpt_turns(p.rejected)[0]}
    return _tools(_with_system(row, system), p.tools)


@register_writer("alpaca_preference", "preference")
def _alpaca_preference(s) -> dict:
    p = _need(s, Preference)
    system, text = _single_turn(p.prompt, "alpaca_preference")
    return _with_system({"instruction": text, "input": "", "chosen": _only_text(p.chosen, "alpaca_preference"),
                         "rejected": _only_text(p.rejected, "alpaca_preference")}, system)


@register_writer("kto", "unpaired")
def _kto(s) -> dict:
    u = _need(s, Unpaired)
    system, text = _single_turn(u.prompt, "kto")
    return _with_system({"prompt": text, "completion": _only_text(u.completion, "kto"), "label": u.label}, system)


@register_writer("messages_kto", "unpaired")
def _messages_kto(s) -> dict:
    u = _need(s, Unpaired)
    return {"messages": u.prompt + u.completion, "label": u.label}


@register_writer("classification", "labelled")
def _classification(s) -> dict:
    x = _need(s, Labelled)
    return {"text": x.text, "label": x.label, **({"text_pair": x.text_pair} if x.text_pair is not None else {})}


def _need(s, cls):
    if not isinstance(s, cls):
        raise RowError(f"a {type(s).__name__.lower()} row cannot be written as a {cls.__name__.lower()} row")
    return s


def writer_for(name: str) -> Writer:
    """A registered writer, or a registered format class that can write its own rows."""
    if name in WRITERS:
        return WRITERS.get(name)
    if name in FORMATS and hasattr(FORMATS.get(name), "to_row"):
        fmt = FORMATS.get(name)()
        return Writer(name, fmt.kind, fmt.to_row)
    return WRITERS.get(name, where="--to")  # raises with the list of choices


# --- reading -------------------------------------------------------------------------------


# `--from kto`: any KTO layout, read row by row by the same formats training reads it with
KIND_READERS = {"kto": ("unpaired",)}


def reader_for(name: str) -> Callable[[dict], object]:
    if name in FORMATS:
        fmt = FORMATS.get(name)()
        return lambda row: fmt.convert(row, FormatOptions())
    if name in KIND_READERS:
        return _reader_of_kind(name, KIND_READERS[name])
    choices = sorted(set(FORMATS.names()) | set(KIND_READERS))
    raise UserError(f"unknown input format {name!r}; choose one of: {', '.join(choices)}", where="--from")


def _reader_of_kind(name: str, kinds: tuple[str, ...]) -> Callable[[dict], object]:
    def read(row: dict):
        fmt = detect_format(row, kinds)
        if fmt is None:
            raise RowError(f"not a {name} row (fields {sorted(row)})")
        return FORMATS.get(fmt)().convert(row, FormatOptions())

    return read


def detect(row: dict) -> str | None:
    """Preference/KTO formats first (their rows also look like conversations), then every other
    registered format: the same parsers `danlu train` reads these rows with."""
    return detect_format(row, ("preference", "unpaired")) or detect_format(row)


PAIR_KINDS = ("preference", "unpaired")


def kind_mismatch(from_: str, writer, where: str) -> None:
    """SFT rows asked to become preference pairs (or KTO rows): no row of the file can, so say
    what the rows are and how pairs are made, not 'fix the row'."""
    if writer.kind not in PAIR_KINDS or from_ not in FORMATS or FORMATS.get(from_).kind != "conversation":
        return
    need = "a chosen and a rejected answer to the same prompt" if writer.kind == "preference" else \
        "an answer marked desirable or not (label true/false)"
    raise DataError(
        f"the rows are SFT rows ({from_}: one answer per prompt); a {writer.name} row needs {need}, "
        "which these rows do not hold", where=where,
        hint="make pairs first: keep each answer as `chosen` and add a worse one as `rejected` (for example the "
             "base model's answer: `danlu synth answers PROMPTS -o worse.jsonl --base-url URL --model BASE`, then "
             "join the two files by prompt); or train these rows with stage: sft")


def convert_data(source: str, to: str, output: str | None = None, *, from_: str = "auto",
                 on_bad_row: str = "error") -> Summary:
    """Rows of `source` rewritten in layout `to` (default output SOURCE.TO.jsonl)."""
    writer = writer_for(to)
    out = check_output(output or default_output(source, to), [source])
    summary = Summary("convert", inputs=[source], outputs=[str(out)])
    read = None if from_ == "auto" else reader_for(from_)
    with AtomicRowWriter(out) as w:
        for raw in iter_good_rows(source, on_bad_row, summary):
            summary.rows_in += 1
            if read is None:
                from_ = detect(raw.data) or ""
                if not from_:
                    raise DataError(f"no known format has fields {sorted(raw.data)}", where=raw.where,
                                    hint="name the input layout with --from")
                read = reader_for(from_)
            try:
                w.write(writer.row(read(raw.data)))
            except RowError as exc:
                kind_mismatch(from_, writer, raw.where)
                if on_bad_row == "error":
                    raise DataError(str(exc), where=raw.where,
                                    hint="fix the row, or pass --on-bad-row skip to skip such rows") from None
                summary.drop("cannot convert")
                continue
            summary.rows_out += 1
    summary.counts.update({"from": from_, "to": to})
    return summary.done()
