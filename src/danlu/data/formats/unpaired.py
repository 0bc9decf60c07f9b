"""Unpaired preference rows for KTO: one answer and whether it is desirable.

Layouts (auto-detected among unpaired formats, or named with data.format):
  unpaired            {"prompt", "completion", "label"}: prompt a string or messages, completion a
                      string or assistant message(s), label true/false (TRL's layout)
  messages_unpaired   {"messages", "label" | "kto_tag"}: the last assistant turn is the answer
                      (LLaMA-Factory's KTO layout)
  sharegpt_unpaired   {"conversations", "label" | "kto_tag"}

A label may be a boolean, 0/1, or the strings true/false, yes/no, 1/0 (as CSV files write them)."""

from __future__ import annotations

from danlu.chat.messages import RowError, Unpaired
from danlu.data.formats.base import Format, FormatOptions, check_roles, text_field
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.preference import message_list, answer_messages, prompt_messages
from danlu.data.formats.registry import register_format
from danlu.data.formats.sharegpt import sharegpt_messages

LABEL_KEYS = ("label", "kto_tag")
TRUE, FALSE = ("true", "yes", "1", "desirable", "good"), ("false", "no", "0", "undesirable", "bad")


def desirable(row: dict) -> bool:
    key = next((k for k in LABEL_KEYS if k in row), "label")
    value = row.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    if value is None:
        raise RowError(f"missing field {key!r}")
    raise RowError(f"field {key!r} must be true or false (desirable or not), got {value!r}")


def split_last_answer(messages: list[dict], opts: FormatOptions, system=None) -> tuple[list[dict], list[dict]]:
    """A conversation ending with an assistant turn → (prompt, [last assistant turn])."""
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError("the conversation does not end with an assistant turn")
    prompt = prompt_messages(messages[:-1], opts, system)
    check_roles(prompt + messages[-1:])
    return prompt, messages[-1:]


def _has_label(row: dict) -> bool:
    return any(k in row for k in LABEL_KEYS)


@register_format("unpaired")
class UnpairedRow(Format):
    kind = "unpaired"
    priority = 24

    @classmethod
    def detect(cls, row):
        return "prompt" in row and "completion" in row and _has_label(row)

    def convert(self, row, opts: FormatOptions) -> Unpaired:
        raw = row.get("prompt")
        if isinstance(raw, str) or raw is None:
            prompt = [{"role": "user", "content": text_field(row, "prompt")}]
        else:
            prompt = message_list(raw, "prompt")
        prompt = prompt_messages(prompt, opts, row.get("system"))
        completion = answer_messages(row, "completion")
        check_roles(prompt + completion)
        return Unpaired(prompt=prompt, completion=completion, label=desirable(row))


@register_format("messages_unpaired")
class MessagesUnpaired(Format):
    kind = "unpaired"
    priority = 22

    @classmethod
    def detect(cls, row):
        return "messages" in row and _has_label(row)

    def convert(self, row, opts: FormatOptions) -> Unpaired:
        prompt, completion = split_last_answer(parse_messages(row["messages"]), opts, row.get("system"))
        return Unpaired(prompt=prompt, completion=completion, label=desirable(row))


@register_format("sharegpt_unpaired")
class ShareGPTUnpaired(Format):
    kind = "unpaired"
    priority = 22

    @classmethod
    def detect(cls, row):
        return "conversations" in row and _has_label(row)

    def convert(self, row, opts: FormatOptions) -> Unpaired:
        messages = sharegpt_messages(row["conversations"])
        prompt, completion = split_last_answer(messages, opts, row.get("system"))
        return Unpaired(prompt=prompt, completion=completion, label=desirable(row))
