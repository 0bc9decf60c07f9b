"""Tool calling (function calling) in one place: the shapes data arrives in, how a chat template
that knows no tools still renders them, and how a model's output becomes OpenAI `tool_calls`.

Shapes (OpenAI's, which Hugging Face chat templates take):
  tools       [{"type": "function", "function": {"name", "description", "parameters"}}]
  tool call   {"type": "function", "function": {"name": str, "arguments": dict}} on an assistant message
  result      {"role": "tool", "content": str}

Text form (Qwen2.5 / Hermes, also danlu's built-in tool template and its fallback for templates
without tools): each call is `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
each result `<tool_response>\\n...\\n</tool_response>` in a user turn."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field

from danlu.chat.messages import RowError

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n"
    "</tool_call>"
)


def parse_json_field(value, what: str):
    """A field that may hold JSON as text: the parsed value, None for blank text, other values as they are."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"{what} is not valid JSON: {exc.msg}") from None
    return value


def normalise_tools(value, what: str = "field 'tools'") -> list[dict] | None:
    """Tool definitions (a JSON string, a list, or one tool; OpenAI-wrapped or bare functions as
    LLaMA-Factory's glaive data has them) → OpenAI tools, or None when there are none."""
    value = parse_json_field(value, what)
    if value in (None, [], {}):
        return None
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise RowError(f"{what} must be a list of tool definitions, got {type(value).__name__}")
    tools = []
    for n, item in enumerate(items):
        fn = item.get("function") if isinstance(item, dict) and isinstance(item.get("function"), dict) else item
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(f"{what}: tool {n + 1} needs a function 'name'")
        tools.append({"type": "function", "function": fn})
    return tools


def normalise_tool_calls(calls, what: str = "tool_calls") -> list[dict]:
    """Tool calls ({"function": {...}} or bare {"name", "arguments"}; arguments an object or a
    JSON string, or legacy "parameters") → [{"type": "function", "function": {name, arguments: dict}}]
    (plus the call's "id" when it has one)."""
    calls = parse_json_field(calls, what)
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        raise RowError(f"{what} must be a function call object or a list of them")
    out = []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(f"{what}: a tool call needs a function name")
        raw = fn.get("arguments", fn.get("parameters", {}))
        args = parse_json_field(raw, f"arguments of tool call {fn['name']!r}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise RowError(f"arguments of tool call {fn['name']!r} must be a JSON object, got {type(args).__name__}")
        entry = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def call_text(call: dict) -> str:
    """One call in the text form, exactly as danlu's built-in tool template writes it."""
    fn = call.get("function", call)
    args = json.dumps(fn.get("arguments", {}), ensure_ascii=False)
    return f'{CALL_OPEN}\n{{"name": "{fn["name"]}", "arguments": {args}}}\n{CALL_CLOSE}'


def uses_tools(messages: list[dict], tools) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def with_call_ids(messages: list[dict]) -> list[dict]:
    """Every tool call gets an id and every tool result its call's id, where the data has none
    (Mistral's templates refuse calls without a 9-character alphanumeric id). The ids follow from
    the message's position and the call, so a conversation and its prefixes get the same ones."""
    if not any(m.get("tool_calls") for m in messages):
        return messages
    out, pending = [], []
    for i, m in enumerate(messages):
        if m.get("tool_calls"):
            calls = [c if c.get("id") else {**c, "id": _call_id(i, j, c)} for j, c in enumerate(m["tool_calls"])]
            m, pending = {**m, "tool_calls": calls}, [c["id"] for c in calls]
        elif m.get("role") == "tool":
            if not m.get("tool_call_id") and pending:
                m = {**m, "tool_call_id": pending[0]}
            pending = pending[1:]
        out.append(m)
    return out


def _call_id(i: int, j: int, call: dict) -> str:
    fn = call.get("function", call)
    key = f"{i}:{j}:{fn.get('name')}:{json.dumps(fn.get('arguments'), sort_keys=True, ensure_ascii=False)}"
    return hashlib.sha1(key.encode()).hexdigest()[:9]


# --- templates without tools -----------------------------------------------------------------

_PROBE = "danlu_probe_"


def template_supports_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template writes tool definitions, the assistant's calls and
    the tool results (probed once per template text by rendering a conversation that has all three)."""
    text = getattr(tokenizer, "chat_template", None)
    if not isinstance(text, str) or not text:
        return False
    if text not in _PROBED:
        _PROBED[text] = _probe(tokenizer)
    return _PROBED[text]


_PROBED: dict[str, bool] = {}  # template text → supports tools


def _probe(tokenizer) -> bool:
    tool = {"type": "function", "function": {"name": f"{_PROBE}fn", "description": f"{_PROBE}desc",
                                             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    call = {"id": "a1b2c3d4e", "type": "function",
            "function": {"name": f"{_PROBE}fn", "arguments": {"q": f"{_PROBE}arg"}}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": f"{_PROBE}result", "tool_call_id": "a1b2c3d4e", "name": f"{_PROBE}fn"},
                {"role": "assistant", "content": "ok"}]
    try:
        out = tokenizer.apply_chat_template(messages, tools=[tool], tokenize=False)
    except Exception:  # noqa: BLE001 — a template that rejects tool turns does not support them
        return False
    return all(f"{_PROBE}{part}" in out for part in ("desc", "arg", "result"))


def textualise(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """For a template without tools: the tool list goes into the system message, each call into
    the assistant's text, and each run of tool results into one user turn (text form above)."""
    out: list[dict] = []
    if tools:
        listing = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": f"{messages[0]['content']}\n\n{listing}"})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": listing})
    for m in messages:
        if m["role"] == "tool":
            block = f"{RESPONSE_OPEN}\n{m.get('content') or ''}\n{RESPONSE_CLOSE}"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            parts = [m["content"]] if m.get("content") else []
            out.append({"role": "assistant", "content": "\n".join(parts + [call_text(c) for c in m["tool_calls"]])})
        else:
            out.append({k: v for k, v in m.items() if k in ("role", "content")})
    for m in out:
        m.pop("_tool_results", None)
    return out


# --- model output → OpenAI tool_calls --------------------------------------------------------

_BLOCK = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CALL_CLOSE) + r"|$)", re.S)


@dataclass
class ParsedOutput:
    """A model's answer split into text and OpenAI tool calls (arguments as JSON strings, as the
    API returns them); `invalid` holds the raw text of blocks that were not a valid call."""

    content: str | None
    tool_calls: list[dict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def parse_tool_calls(text: str, *, new_id=None) -> ParsedOutput:
    """`<tool_call>{json}</tool_call>` blocks (an unclosed last block too: generation may stop
    at the turn end before the closing tag) → OpenAI tool_calls; the rest is the content."""
    new_id = new_id or (lambda: f"call_{uuid.uuid4().hex[:24]}")
    calls, invalid = [], []
    for match in _BLOCK.finditer(text):
        raw = match.group(1).strip()
        try:
            (call,) = normalise_tool_calls(raw, "tool call")
        except (RowError, ValueError):
            invalid.append(raw)
            continue
        fn = call["function"]
        calls.append({"id": new_id(), "type": "function",
                      "function": {"name": fn["name"], "arguments": json.dumps(fn["arguments"], ensure_ascii=False)}})
    content = _BLOCK.sub("", text).strip() if CALL_OPEN in text else text.strip()
    return ParsedOutput(content or None, calls, invalid)


def score_calls(predicted: list[dict], expected: list[dict]) -> dict[str, bool]:
    """Tool-call accuracy of one answer, call by call in order: right function names, arguments
    that are valid JSON objects, and arguments equal to the expected ones (as parsed JSON)."""
    pred = [c.get("function", c) for c in predicted]
    gold = [c.get("function", c) for c in normalise_tool_calls(expected)] if expected else []
    names = len(pred) == len(gold) and all(p.get("name") == g["name"] for p, g in zip(pred, gold))
    parsed = []
    for p in pred:
        try:
            args = json.loads(p["arguments"]) if isinstance(p.get("arguments"), str) else p.get("arguments")
        except json.JSONDecodeError:
            args = None
        parsed.append(args)
    valid = bool(pred) and all(isinstance(a, dict) for a in parsed)
    exact = names and valid and all(a == g["arguments"] for a, g in zip(parsed, gold))
    return {"name": names, "valid_json": valid, "exact": exact}
