"""Tool calls in `danlu serve` without a model: a scripted backend answers with fixed text, the
app runs in-process (starlette's TestClient). Requests render exactly as training renders them,
answers become OpenAI tool_calls (whole and streamed), and malformed tool requests are 400s in
OpenAI's error shape."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from danlu.serve.adapters import ModelEntry
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.engine import Event
from danlu.serve.toolcalls import ToolStream, answer

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class _Handle:
    def cancel(self):
        pass


class ScriptedBackend:
    """Answers every request with `self.reply`, split into `self.pieces` events."""

    name = "scripted"
    max_context = 4096

    def __init__(self, tokenizer):
        self.base = ModelEntry("m", "base", "builtin:tiny", tokenizer, [2])
        self.reply, self.pieces, self.prompts = "hello", 1, []

    def models(self):
        return [self.base]

    def resolve(self, name):
        from danlu.serve.errors import not_found

        if name != "m":
            raise not_found("no such model", param="model")
        return self.base

    def submit(self, entry, ids, n, params, loop, queue, offset=0):
        self.prompts.append(ids)
        size = max(1, -(-len(self.reply) // self.pieces))
        parts = [self.reply[i:i + size] for i in range(0, len(self.reply), size)] or [""]
        for c in range(n):
            for k, part in enumerate(parts):
                last = k == len(parts) - 1
                loop.call_soon_threadsafe(queue.put_nowait, Event(offset + c, part, "stop" if last else None, k + 1))
        return _Handle()

    def stats(self):
        return {}

    def tokenizer_text(self, ids):
        return self.base.tokenizer.decode(ids)

    def start(self):
        pass

    def stop(self):
        pass


@pytest.fixture
def app(tiny_tokenizer):
    from danlu.chat.templates import resolve_template

    resolve_template(tiny_tokenizer, "auto")
    backend = ScriptedBackend(tiny_tokenizer)
    with TestClient(create_app(backend, ServeSettings())) as client:
        yield client, backend


def chat(client, **kw):
    body = {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 50, **kw}
    return client.post("/v1/chat/completions", json=body)


def test_a_call_comes_back_as_openai_tool_calls(app, tiny_tokenizer):
    client, backend = app
    backend.reply = CALL
    r = chat(client, tools=TOOLS)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    expected = tiny_tokenizer.apply_chat_template([{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                                                  tokenize=False, add_generation_prompt=True)
    assert tiny_tokenizer.decode(backend.prompts[-1]) == expected, "the prompt is the training render with tools"


def test_history_with_calls_and_results_renders_as_training_does(app, tiny_tokenizer):
    from danlu.chat.templates import ChatTemplate

    client, backend = app
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21°C"}]
    r = chat(client, tools=TOOLS, messages=history)
    assert r.status_code == 200 and r.json()["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    trained = [history[0], {**history[1], "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        history[2]]
    text = ChatTemplate(tiny_tokenizer, "t").render(trained, tools=TOOLS, add_generation_prompt=True)
    assert tiny_tokenizer.decode(backend.prompts[-1]) == text
    assert '"arguments": {"city": "Paris"}' in text and "<tool_response>\nsunny, 21°C\n</tool_response>" in text


def test_tool_choice_none_hides_the_tools_and_parses_nothing(app):
    client, backend = app
    backend.reply = CALL
    r = chat(client, tools=TOOLS, tool_choice="none")
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": CALL}
    assert "get_weather" not in backend.tokenizer_text(backend.prompts[-1])


def test_stream_sends_one_tool_calls_delta_per_call(app):
    client, backend = app
    backend.reply, backend.pieces = "Let me check." + CALL + "\n" + CALL.replace("Paris", "Oslo"), 17
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = "".join(r.iter_text())
    chunks = [json.loads(e.removeprefix("data: ")) for e in raw.split("\n\n") if e.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    text = "".join(d.get("content") or "" for d in deltas)
    assert text == "Let me check." and "<tool" not in text
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [c["index"] for c in calls] == [0, 1]
    assert [json.loads(c["function"]["arguments"])["city"] for c in calls] == ["Paris", "Oslo"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("tool_calls") == 1


@pytest.mark.parametrize("kw, param", [
    ({"tools": "get_weather"}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0]"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools[0].function.parameters"),
    ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
    ({"tools": TOOLS, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "content": "r"}]}, "messages[1].tool_calls"),
    ({"tools": TOOLS, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"arguments": "{}"}}]}, {"role": "tool", "content": "r"}]},
     "messages[1].tool_calls"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages[0].tool_calls"),
    ({"functions": [{"name": "f"}]}, "functions"),
])
def test_malformed_tool_requests_are_400_in_openais_shape(app, kw, param):
    client, _ = app
    r = chat(client, **kw)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]


@pytest.mark.parametrize("text, content, names, finish", [
    (CALL, None, ["get_weather"], "tool_calls"),
    ("Sure. " + CALL, "Sure.", ["get_weather"], "tool_calls"),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}', None, ["get_weather"], "tool_calls"),
    ("<tool_call>\n{not json}\n</tool_call>", "<tool_call>\n{not json}\n</tool_call>", [], "stop"),
    ("plain answer", "plain answer", [], "stop"),
])
def test_answers_are_parsed_like_training_writes_them(text, content, names, finish):
    message, got = answer(text, "stop")
    assert message["content"] == content and got == finish
    assert [c["function"]["name"] for c in message.get("tool_calls", [])] == names


def test_tool_stream_holds_back_a_possible_call_start():
    s = ToolStream()
    assert s.push("Hi <tool") == [{"content": "Hi "}]
    assert s.push("_c") == [] and s.push("x") == [{"content": "<tool_cx"}]
    assert s.push(" <") == [{"content": " "}] and s.finish() == [{"content": "<"}]
    s = ToolStream()
    assert s.push(CALL[:-len("\n</tool_call>")]) == [] and s.calls == 0
    (delta,) = s.finish()  # generation ended inside the block: parsed as it stands
    assert delta["tool_calls"][0]["function"]["name"] == "get_weather" and s.calls == 1
