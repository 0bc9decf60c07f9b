"""OpenAI messages: {"messages": [{"role", "content", "tool_calls"?, "tool_call_id"?}], "tools"?, "images"?}.
Content may be a string or a list of parts: text, and images as {"type": "image_url", "image_url":
{"url": path | data:image/...;base64,...}} (or {"type": "image", "image": ...}), each kept as an
"<image>" placeholder plus an ImageRef (chat/images.py). LLaMA-Factory's multimodal layout
(`images: [paths]` beside messages holding "<image>") reads the same. The legacy `function_call` /
role `function` of OpenAI's older API are read as a tool call and a tool result."""

from __future__ import annotations

from danlu.chat.messages import Conversation, RowError
from danlu.chat.tools import normalise_tool_calls, normalise_tools
from danlu.chat.images import IMAGE, image_ref
from danlu.data.formats.base import Format, FormatOptions, describe_value, finish_messages, row_images
from danlu.data.formats.registry import register_format

__all__ = ["Messages", "normalise_tool_calls", "parse_messages"]
LEGACY_ROLES = {"function": "tool"}


def _content(value, where: str, images: list | None = None) -> str:
    """A string, None, or OpenAI content parts [{"type": "text", "text": ...}] → a string; image
    parts become "<image>" with their reference appended to `images` (refused where that is None)."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif images is not None and isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                images.append(image_ref(part.get(part["type"]), where=where))
                texts.append(IMAGE)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RowError(f"{where}: content part of type {kind!r} is not text (danlu trains text models)")
        return "".join(texts)
    raise RowError(f"{where}: content must be a string, got {describe_value(value)}")


def parse_messages(raw, key: str = "messages", images: list | None = None) -> list[dict]:
    if raw is None:
        raise RowError(f"missing field {key!r}")
    if not isinstance(raw, list):
        raise RowError(f"field {key!r} must be a list of messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise RowError(f"{key}[{i}] must be an object with 'role' and 'content'")
        role = LEGACY_ROLES.get(m["role"], m["role"])
        calls = m.get("tool_calls") or ([m["function_call"]] if m.get("function_call") else None)
        if m.get("content") is None and not calls:  # only a tool call may come without text
            raise RowError(f"{key}[{i}] ({role}) has no 'content'")
        msg = {"role": role, "content": _content(m.get("content"), f"{key}[{i}]", images)}
        if calls:
            msg["tool_calls"] = normalise_tool_calls(calls, f"{key}[{i}] tool_calls")
        for extra in ("name", "tool_call_id"):
            if isinstance(m.get(extra), str) and m[extra]:
                msg[extra] = m[extra]
        messages.append(msg)
    return messages


@register_format("messages")
class Messages(Format):
    kind = "conversation"
    signature = ("messages",)
    priority = 30

    def convert(self, row, opts: FormatOptions) -> Conversation:
        tools = normalise_tools(row.get("tools"))
        found: list = []
        messages = finish_messages(parse_messages(row.get("messages"), images=found), opts)
        images = row_images(row, messages, found=found)
        return Conversation(messages, tools=tools, images=images)
