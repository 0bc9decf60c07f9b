"""Preference pairs for DPO / IPO / SimPO / ORPO / reward models: a prompt and two answers.

Layouts (auto-detected among preference formats, or named with data.format):
  preference            {"prompt", "chosen", "rejected", "system"?}: prompt a string or messages,
                        answers a string, one message or a list of messages (TRL's layout); without
                        "prompt", chosen/rejected are whole conversations sharing the prompt (TRL's
                        implicit prompt)
  sharegpt_preference   {"conversations", "chosen": {"from", "value"}, "rejected": ..., "system"?,
                        "tools"?} (LLaMA-Factory's ranking layout)
  messages_preference   {"messages", "chosen": {"role", "content"}, "rejected": ..., "tools"?}
  alpaca_preference     {"instruction", "input"?, "chosen", "rejected", "system"?}

Images (vision-language DPO / ORPO): image content parts in the prompt's messages, or an
`images` list of paths beside `<image>` placeholders in the prompt (LLaMA-Factory's layout; without
a placeholder the images go before the first user turn's text). Answers are text only."""

from __future__ import annotations

from danlu.chat.images import IMAGE, count_images
from danlu.chat.messages import Preference, RowError
from danlu.data.formats.base import (Format, FormatOptions, check_roles, finish_messages, parse_json_field, row_images,
                                     text_field)
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.registry import register_format
from danlu.data.formats.sharegpt import sharegpt_messages

PAIR = ("chosen", "rejected")


def message_list(value, key: str, images: list | None = None) -> list[dict]:
    """A message, a list of messages (role/content or from/value) → OpenAI messages; image content
    parts are collected into `images` when given (else refused)."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items or not all(isinstance(m, dict) for m in items):
        raise RowError(f"field {key!r} must be a string, a message or a list of messages")
    if all("from" in m and "role" not in m for m in items):
        return sharegpt_messages(items)
    return parse_messages(items, key, images=images)


def answer_messages(row: dict, key: str) -> list[dict]:
    """One answer: a string or assistant message(s), checked to be a non-empty assistant turn."""
    value = row.get(key)
    if value is None:
        raise RowError(f"missing field {key!r}")
    if isinstance(value, str):
        return [{"role": "assistant", "content": text_field(row, key)}]
    messages = message_list(value, key)
    if messages[0]["role"] != "assistant":
        raise RowError(f"field {key!r} must be an assistant answer, got role {messages[0]['role']!r}")
    return messages


def prompt_messages(messages: list[dict], opts: FormatOptions, system=None) -> list[dict]:
    """A prompt: [system] (user, assistant)* user — it must end with the user's (or a tool's) turn."""
    if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": system}, *messages]
    messages = finish_messages(messages, opts, require_assistant_last=False)
    if messages[-1]["role"] not in ("user", "tool"):
        raise RowError(f"the prompt must end with a user turn, not {messages[-1]['role']}")
    return messages


def make_pair(prompt: list[dict], chosen: list[dict], rejected: list[dict], tools=None, *, row: dict | None = None,
              found: list | None = None) -> Preference:
    """The pair; `row`'s `images` column (or the image parts `found` in the prompt) go with the prompt."""
    for answer in (chosen, rejected):
        check_roles(prompt + answer)
    images = row_images(row, prompt, found=found) if row is not None else []
    if count_images(chosen + rejected):
        raise RowError(f"images go in the prompt; an answer holds an {IMAGE} placeholder")
    return Preference(prompt=prompt, chosen=chosen, rejected=rejected, tools=tools or None, images=images)


def split_implicit(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Whole conversations that share a prompt → (prompt, chosen answer, rejected answer)."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and chosen[n - 1]["role"] == "assistant":  # the answers start with an assistant turn
        n -= 1
    if n == 0:
        raise RowError("without a 'prompt' field, 'chosen' and 'rejected' must be conversations sharing the prompt")
    return chosen[:n], chosen[n:], rejected[n:]


@register_format("preference")
class PreferencePair(Format):
    kind = "preference"
    priority = 24

    @classmethod
    def detect(cls, row):
        return all(k in row for k in PAIR) and not any(k in row for k in ("conversations", "messages", "instruction"))

    def convert(self, row, opts: FormatOptions) -> Preference:
        tools = parse_json_field(row.get("tools"), "field 'tools'")
        if "prompt" not in row:
            chosen_all = message_list(row.get("chosen"), "chosen")
            rejected_all = message_list(row.get("rejected"), "rejected")
            prompt, chosen, rejected = split_implicit(chosen_all, rejected_all)
            return make_pair(prompt_messages(prompt, opts, row.get("system")), chosen, rejected, tools, row=row)
        raw, found = row["prompt"], []
        if isinstance(raw, str) or raw is None:
            prompt = [{"role": "user", "content": text_field(row, "prompt")}]
        else:
            prompt = message_list(raw, "prompt", images=found)
        prompt = prompt_messages(prompt, opts, row.get("system"))
        return make_pair(prompt, answer_messages(row, "chosen"), answer_messages(row, "rejected"), tools, row=row,
                         found=found)


@register_format("sharegpt_preference")
class ShareGPTPreference(Format):
    kind = "preference"
    signature = ("conversations", "chosen", "rejected")
    priority = 20

    def convert(self, row, opts: FormatOptions) -> Preference:
        prompt = prompt_messages(sharegpt_messages(row["conversations"]), opts, row.get("system"))
        tools = parse_json_field(row.get("tools"), "field 'tools'")
        return make_pair(prompt, answer_messages(row, "chosen"), answer_messages(row, "rejected"), tools, row=row)


@register_format("messages_preference")
class MessagesPreference(Format):
    kind = "preference"
    signature = ("messages", "chosen", "rejected")
    priority = 20

    def convert(self, row, opts: FormatOptions) -> Preference:
        found: list = []
        prompt = prompt_messages(parse_messages(row["messages"], images=found), opts, row.get("system"))
        tools = parse_json_field(row.get("tools"), "field 'tools'")
        return make_pair(prompt, answer_messages(row, "chosen"), answer_messages(row, "rejected"), tools, row=row,
                         found=found)


@register_format("alpaca_preference")
class AlpacaPreference(Format):
    kind = "preference"
    signature = ("instruction", "chosen", "rejected")
    priority = 22

    def convert(self, row, opts: FormatOptions) -> Preference:
        instruction = text_field(row, "instruction", allow_empty=bool(row.get("input")))
        extra = text_field(row, "input", required=False)
        text = f"{instruction}\n{extra}" if instruction and extra else instruction or extra
        prompt = prompt_messages([{"role": "user", "content": text}], opts, row.get("system"))
        return make_pair(prompt, answer_messages(row, "chosen"), answer_messages(row, "rejected"), row=row)
