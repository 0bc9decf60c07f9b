"""Tool calls (OpenAI function calling) in `danlu serve`, on danlu's training path both ways:

- a request's `tools`, assistant `tool_calls` and `role: tool` messages are normalised by
  `danlu.chat.tools` and rendered by `ChatTemplate.render` — the same text and ids a model was
  trained on (the tokenizer's template when it writes tools, else danlu's text form);
- the answer is parsed by `parse_tool_calls`: `<tool_call>{json}</tool_call>` blocks become
  `message.tool_calls` with `finish_reason: "tool_calls"`;
- streaming: text that may start a `<tool_call>` block is held back; each block is sent as one
  `tool_calls` delta when it closes (or when generation ends inside it).

`tool_choice`: "auto" (the default when tools are given) or "none" (the tools are not shown to
the model and its answer is not parsed); "required" and a named function are refused (400)."""

from __future__ import annotations

from dataclasses import dataclass

from danlu.chat.messages import RowError
from danlu.chat.tools import CALL_CLOSE, CALL_OPEN, normalise_tool_calls, normalise_tools, parse_tool_calls
from danlu.serve.errors import bad_request

MAX_TOOLS = 128


@dataclass
class ToolRequest:
    tools: list[dict] | None  # OpenAI tools shown to the model (None: none, or tool_choice none)
    parse: bool  # whether answers are parsed into tool_calls


def tool_request(body) -> ToolRequest:
    """Validate `tools` / `tool_choice`; every problem is a 400 naming the field."""
    choice = body.tool_choice
    if choice not in (None, "auto", "none"):
        shown = choice if isinstance(choice, str) else "a named function"
        raise bad_request(f"tool_choice {shown!r} is not supported by danlu serve; use 'auto' or 'none'",
                          param="tool_choice", code="unsupported_parameter")
    if not body.tools:
        return ToolRequest(None, False)
    if len(body.tools) > MAX_TOOLS:
        raise bad_request(f"tools: at most {MAX_TOOLS} tools", param="tools")
    for i, tool in enumerate(body.tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(tool.get("function"), dict):
            raise bad_request(f"tools[{i}]: a tool is {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}",
                              param=f"tools[{i}]")
        params = tool["function"].get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"tools[{i}].function.parameters must be a JSON schema object",
                              param=f"tools[{i}].function.parameters")
    try:
        tools = normalise_tools(body.tools, "tools")
    except RowError as exc:
        raise bad_request(str(exc), param="tools") from None
    if choice == "none":
        return ToolRequest(None, False)
    return ToolRequest(tools, True)


def template_messages(messages) -> list[dict]:
    """Request messages → the dicts the chat template sees; assistant tool_calls with their
    arguments as objects (OpenAI sends them as JSON strings; templates write them with tojson)."""
    out = []
    for i, m in enumerate(messages):
        message = m.for_template()
        calls = message.get("tool_calls")
        if calls is not None:
            if m.role != "assistant":
                raise bad_request(f"messages[{i}]: only assistant messages carry tool_calls",
                                  param=f"messages[{i}].tool_calls")
            if calls == []:
                message.pop("tool_calls")
            else:
                try:
                    message["tool_calls"] = normalise_tool_calls(calls, f"messages[{i}].tool_calls")
                except RowError as exc:
                    raise bad_request(str(exc), param=f"messages[{i}].tool_calls") from None
        if m.role == "tool" and not isinstance(message.get("tool_call_id", ""), str):
            raise bad_request(f"messages[{i}].tool_call_id must be a string", param=f"messages[{i}].tool_call_id")
        out.append(message)
    return out


def answer(text: str, finish: str) -> tuple[dict, str]:
    """One generated answer → (OpenAI message, finish_reason) with its tool calls parsed."""
    parsed = parse_tool_calls(text)
    if not parsed.tool_calls or finish == "error":
        return {"role": "assistant", "content": text}, finish
    return {"role": "assistant", "content": parsed.content, "tool_calls": parsed.tool_calls}, "tool_calls"


class ToolStream:
    """One choice's streamed text → content pieces and tool-call deltas (OpenAI's chunk shape:
    {"index", "id", "type", "function": {"name", "arguments"}} per call, all in one delta)."""

    def __init__(self):
        self.buffer = ""  # held-back text: a possible start of a block, or an open block
        self.calls = 0
        self.started = False  # content emitted yet (leading whitespace is dropped)

    def push(self, text: str) -> list[dict]:
        self.buffer += text
        deltas = []
        while True:
            start = self.buffer.find(CALL_OPEN)
            if start < 0:
                keep = _partial(self.buffer)
                deltas += self._content(self.buffer[:len(self.buffer) - keep])
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return deltas
            deltas += self._content(self.buffer[:start])
            end = self.buffer.find(CALL_CLOSE, start)
            if end < 0:
                self.buffer = self.buffer[start:]
                return deltas
            block, self.buffer = self.buffer[start:end + len(CALL_CLOSE)], self.buffer[end + len(CALL_CLOSE):]
            deltas += self._block(block)

    def finish(self) -> list[dict]:
        """The rest at the end of generation (an unclosed block is parsed as it stands)."""
        rest, self.buffer = self.buffer, ""
        return self._block(rest) if CALL_OPEN in rest else self._content(rest, last=True)

    def _block(self, block: str) -> list[dict]:
        parsed = parse_tool_calls(block)
        if not parsed.tool_calls:
            return self._content(block)
        deltas = []
        for call in parsed.tool_calls:
            deltas.append({"tool_calls": [{"index": self.calls, **call}]})
            self.calls += 1
        return deltas

    def _content(self, text: str, last: bool = False) -> list[dict]:
        if not self.started:
            text = text.lstrip()
        if self.calls and not text.strip():
            return []  # whitespace between and after calls is not content
        if not text or (last and not text.strip()):
            return []
        self.started = True
        return [{"content": text}]


def _partial(text: str) -> int:
    """Length of the longest suffix of `text` that CALL_OPEN starts with (held back)."""
    for n in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(CALL_OPEN[:n]):
            return n
    return 0
