"""sharegpt: {"conversations": [{"from": human|gpt|system|function_call|observation, "value"}],
"system"?, "tools"?} — LLaMA-Factory's layout, tool calls included."""

from __future__ import annotations

from danlu.data.formats.base import Format, FormatOptions, finish_messages, parse_json_field
from danlu.data.formats.registry import register_format
from danlu.data.sample import Conversation, RowError

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_call": "function_call",
}


def sharegpt_messages(turns, role_key="from", content_key="value") -> list[dict]:
    if not isinstance(turns, list):
        raise RowError("field 'conversations' must be a list of turns")
    messages: list[dict] = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or role_key not in t:
            raise RowError(f"conversations[{i}] must be an object with {role_key!r} and {content_key!r}")
        role = ROLES.get(str(t[role_key]).lower())
        if role is None:
            raise RowError(f"conversations[{i}]: unknown role {t[role_key]!r}")
        value = t.get(content_key)
        if value is not None and not isinstance(value, str):
            raise RowError(f"conversations[{i}]: {content_key!r} must be a string")
        if role == "function_call":
            call = parse_json_field(value, f"conversations[{i}] function call")
            calls = call if isinstance(call, list) else [call]
            tool_calls = []
            for c in calls:
                if not isinstance(c, dict) or "name" not in c:
                    raise RowError(f"conversations[{i}]: a function call needs a 'name'")
                args = parse_json_field(c.get("arguments", {}), "function call arguments")
                tool_calls.append({"type": "function", "function": {"name": c["name"], "arguments": args or {}}})
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        else:
            messages.append({"role": role, "content": value or ""})
    return messages


@register_format("sharegpt")
class ShareGPT(Format):
    kind = "conversation"
    signature = ("conversations",)
    priority = 30

    def convert(self, row, opts: FormatOptions) -> Conversation:
        messages = sharegpt_messages(row["conversations"])
        system = row.get("system")
        if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": system})
        tools = parse_json_field(row.get("tools"), "field 'tools'")
        return Conversation(finish_messages(messages, opts), tools=tools or None)
