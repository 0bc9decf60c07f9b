"""Prompt-only rows for the stages that generate their own answers (ppo, grpo, rloo, and
sequence-level distill):

  prompt           {"prompt": "text" | [messages ending with a user turn], "system"?: str, ...}
  prompt_messages  {"messages": [...]}: the conversation up to its last user turn; trailing
                   assistant turns (a reference answer) are left out
  prompt_alpaca    {"instruction", "input"?, "system"?, "history"?}: the alpaca prompt (an
                   "output" is left out), so SFT data can feed an RL stage as it is

Every other field of the row is kept in `Prompt.extra` (GRPO/RLOO hand such columns to reward
functions as keyword arguments); the answer fields of SFT rows (`response`, `completion`) are
ignored like any other."""

from __future__ import annotations

from danlu.chat.messages import Prompt, RowError
from danlu.data.formats.alpaca import Alpaca
from danlu.data.formats.base import Format, FormatOptions, check_roles, fill_placeholders, text_field
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.registry import register_format


def finish_prompt(messages: list[dict], opts: FormatOptions) -> list[dict]:
    """Default system prompt, placeholders, role order; the prompt must end with a user turn."""
    if opts.system and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": opts.system}, *messages]
    for m in messages:
        if opts.placeholders and isinstance(m.get("content"), str):
            m["content"] = fill_placeholders(m["content"], opts.placeholders)
    check_roles(messages, require_assistant_last=False)
    if messages[-1]["role"] != "user":
        raise RowError(f"the prompt ends with a {messages[-1]['role']} turn; it must end with a user turn")
    if not (messages[-1].get("content") or "").strip():
        raise RowError("the last user turn is empty")
    return messages


def _extra(row: dict, used: tuple[str, ...]) -> dict:
    return {k: v for k, v in row.items() if k not in used}


@register_format("prompt")
class PromptOnly(Format):
    kind = "prompt"
    signature = ("prompt",)
    priority = 95  # after every conversation format (a {prompt, response} row is SFT data first)

    def convert(self, row, opts: FormatOptions) -> Prompt:
        raw = row.get("prompt")
        if isinstance(raw, list):
            messages = parse_messages(raw, "prompt")
        else:
            messages = [{"role": "user", "content": text_field(row, "prompt")}]
            system = row.get("system")
            if isinstance(system, str) and system.strip():
                messages.insert(0, {"role": "system", "content": system})
        return Prompt(finish_prompt(messages, opts), extra=_extra(row, ("prompt", "system")))


@register_format("prompt_messages")
class PromptFromMessages(Format):
    kind = "prompt"
    signature = ("messages",)
    priority = 94

    def convert(self, row, opts: FormatOptions) -> Prompt:
        if row.get("messages") is None:
            raise RowError("missing field 'messages'")
        messages = parse_messages(row["messages"])
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages:
            raise RowError("no user turn")
        return Prompt(finish_prompt(messages, opts), extra=_extra(row, ("messages", "tools")))


@register_format("prompt_alpaca")
class PromptFromAlpaca(Format):
    kind = "prompt"
    signature = ("instruction",)
    priority = 96

    def convert(self, row, opts: FormatOptions) -> Prompt:
        # alpaca's own conversion (history, system, instruction + input) with a stand-in answer,
        # which is then left out
        conversation = Alpaca().convert({**row, "output": "-"}, opts)
        extra = _extra(row, ("instruction", "input", "output", "system", "history"))
        return Prompt(finish_prompt(conversation.messages[:-1], FormatOptions()), extra=extra)
