"""sharegpt: {"conversations": [{"from": human|gpt|system|function_call|observation, "value"}],
"system"?, "tools"?} — LLaMA-Factory's layout, tool calls included: a `function_call` turn holds
{"name", "arguments"} (or a list of them) as JSON, an `observation` turn the tool's result."""

from __future__ import annotations

from danlu.chat.messages import Conversation, RowError
from danlu.chat.tools import normalise_tool_calls, normalise_tools
from danlu.data.formats.base import Format, FormatOptions, describe_value, finish_messages, row_images
from danlu.data.formats.registry import register_format

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


def tool_call_message(value, where: str) -> dict:
    """A function-call turn's JSON text → an assistant message with tool_calls."""
    return {"role": "assistant", "content": "", "tool_calls": normalise_tool_calls(value, f"{where} function call")}


def sharegpt_messages(turns, role_key="from", content_key="value") -> list[dict]:
    if turns is None:
        raise RowError("missing field 'conversations'")
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
        if value is None and role != "function_call":
            raise RowError(f"conversations[{i}] ({t[role_key]}) has no {content_key!r}")
        if value is not None and not isinstance(value, str):
            raise RowError(f"conversations[{i}]: {content_key!r} must be a string, got {describe_value(value)}")
        if role == "function_call":
            messages.append(tool_call_message(value, f"conversations[{i}]"))
        else:
            messages.append({"role": role, "content": value or ""})
    return messages


@register_format("sharegpt")
class ShareGPT(Format):
    kind = "conversation"
    signature = ("conversations",)
    priority = 30

    def convert(self, row, opts: FormatOptions) -> Conversation:
        messages = sharegpt_messages(row.get("conversations"))
        system = row.get("system")
        if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": system})
        messages = finish_messages(messages, opts)
        images = row_images(row, messages)  # LLaMA-Factory's multimodal layout: images beside "<image>" turns
        return Conversation(messages, tools=normalise_tools(row.get("tools")), images=images)
