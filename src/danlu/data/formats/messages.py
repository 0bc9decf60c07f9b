"""OpenAI messages: {"messages": [{"role", "content", "tool_calls"?}], "tools"?}."""

from __future__ import annotations

from danlu.data.formats.base import Format, FormatOptions, finish_messages, parse_json_field
from danlu.data.formats.registry import register_format
from danlu.data.sample import Conversation, RowError


def normalise_tool_calls(calls) -> list[dict]:
    """OpenAI tool calls with `arguments` as a JSON string or object → arguments as an object."""
    out = []
    for call in calls or []:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RowError("a tool call needs a function name")
        args = parse_json_field(fn.get("arguments", {}), f"arguments of tool call {fn['name']!r}")
        out.append({"type": "function", "function": {"name": fn["name"], "arguments": args or {}}})
    return out


def parse_messages(raw, key: str = "messages") -> list[dict]:
    if not isinstance(raw, list):
        raise RowError(f"field {key!r} must be a list of messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise RowError(f"{key}[{i}] must be an object with 'role' and 'content'")
        msg = {"role": m["role"], "content": m.get("content") if m.get("content") is not None else ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = normalise_tool_calls(m["tool_calls"])
        if m.get("name"):
            msg["name"] = m["name"]
        messages.append(msg)
    return messages


@register_format("messages")
class Messages(Format):
    kind = "conversation"
    signature = ("messages",)
    priority = 30

    def convert(self, row, opts: FormatOptions) -> Conversation:
        tools = parse_json_field(row.get("tools"), "field 'tools'")
        return Conversation(finish_messages(parse_messages(row["messages"]), opts), tools=tools or None)
