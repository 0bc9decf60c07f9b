"""Tool-calling data: the shapes tools and calls arrive in (OpenAI, LLaMA-Factory sharegpt,
legacy function_call), and model output → OpenAI tool_calls (phase 2 of issue 13 wires this
into serve and eval)."""

from __future__ import annotations

import json

import pytest

from danlu.chat.messages import RowError
from danlu.data.dataset import iter_samples
from danlu.data.report import DataReport
from danlu.chat.tools import (call_text, normalise_tool_calls, normalise_tools, parse_tool_calls, score_calls,
                              textualise)
from tests.conftest import write_jsonl

FN = {"name": "get_weather", "description": "Weather of a city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.mark.parametrize("value", [
    [FN], json.dumps([FN]), FN, [{"type": "function", "function": FN}], json.dumps([{"type": "function", "function": FN}]),
])
def test_tools_become_openai_tools(value):
    assert normalise_tools(value) == [{"type": "function", "function": FN}]


@pytest.mark.parametrize("value", [None, "", "[]", [], {}])
def test_no_tools_is_none(value):
    assert normalise_tools(value) is None


@pytest.mark.parametrize("value, match", [("[{", "not valid JSON"), ([{"description": "x"}], "needs a function 'name'"),
                                          (42, "must be a list")])
def test_bad_tools_are_row_errors(value, match):
    with pytest.raises(RowError, match=match):
        normalise_tools(value)


@pytest.mark.parametrize("call", [
    {"name": "f", "arguments": {"a": 1}},
    {"name": "f", "arguments": '{"a": 1}'},
    {"name": "f", "parameters": {"a": 1}},
    {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
    '{"name": "f", "arguments": {"a": 1}}',
])
def test_tool_call_shapes(call):
    (out,) = normalise_tool_calls(call)
    assert out["function"] == {"name": "f", "arguments": {"a": 1}}


@pytest.mark.parametrize("call, match", [({"name": "f", "arguments": "[1, 2]"}, "must be a JSON object"),
                                         ({"name": "f", "arguments": "{oops"}, "not valid JSON"),
                                         ({"arguments": {}}, "needs a function name"), ([], "must be a function call")])
def test_bad_tool_calls(call, match):
    with pytest.raises(RowError, match=match):
        normalise_tool_calls(call)


def test_openai_messages_with_tools_parse(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                      {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
                      {"role": "assistant", "content": "21°C in Paris."}],
         "tools": [{"type": "function", "function": FN}]},
        # OpenAI's legacy function calling
        {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                      {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                      {"role": "function", "name": "get_weather", "content": '{"temp": 3}'},
                      {"role": "assistant", "content": "3°C."}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                      {"role": "assistant", "content": "?"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"},
                      {"role": "assistant", "content": "?"}]},
    ]
    report = DataReport()
    samples = list(iter_samples(str(write_jsonl(tmp_path / "m.jsonl", rows)), report=report))
    assert len(samples) == 2
    first = samples[0]
    assert first.messages[1] == {"role": "user", "content": "Weather in Paris?"}
    assert first.messages[2]["tool_calls"] == [{"type": "function", "id": "call_1",
                                                "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert first.messages[3] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"}
    assert first.tools == [{"type": "function", "function": FN}]
    legacy = samples[1]
    assert legacy.messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert legacy.messages[2]["role"] == "tool" and legacy.messages[2]["name"] == "get_weather"
    reasons = [r["reason"] for e in report.dropped.values() for r in e["rows"]]
    assert any("image not found" in r for r in reasons)  # image parts are read now (issue 23); 'x' is no file
    assert any("a tool result must follow an assistant tool call" in r for r in reasons)


def test_sharegpt_function_calls(tmp_path):
    turns = [{"from": "human", "value": "Weather in Paris and Oslo?"},
             {"from": "function_call", "value": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                                                            {"name": "get_weather", "arguments": {"city": "Oslo"}}])},
             {"from": "observation", "value": "[21, 3]"},
             {"from": "gpt", "value": "21°C and 3°C."}]
    bad = [turns[0], {"from": "function_call", "value": "get_weather(Paris)"}, turns[2], turns[3]]
    report = DataReport()
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": turns, "tools": json.dumps([FN])},
                                              {"conversations": bad}])
    (s,) = list(iter_samples(str(path), report=report))
    assert [c["function"]["arguments"]["city"] for c in s.messages[1]["tool_calls"]] == ["Paris", "Oslo"]
    assert s.messages[2] == {"role": "tool", "content": "[21, 3]"}
    assert s.tools[0]["function"]["name"] == "get_weather"
    assert "function call is not valid JSON" in str(report.dropped)


# --- model output → OpenAI tool_calls ---------------------------------------------------------

IDS = iter(f"call_{i}" for i in range(1000))


def new_id():
    return next(IDS)


def test_parse_one_call_round_trips_call_text():
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "巴黎"}}}
    out = parse_tool_calls(call_text(call), new_id=lambda: "call_x")
    assert out.content is None and out.invalid == []
    assert out.tool_calls == [{"id": "call_x", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "巴黎"}'}}]


def test_parse_text_around_several_calls_and_an_unclosed_one():
    text = ('Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": "{\\"y\\": 2}"}\n</tool_call>\n'
            '<tool_call>\n{"name": "c", "arguments": {}}')  # generation stopped at the turn end
    out = parse_tool_calls(text, new_id=new_id)
    assert out.content == "Let me check."
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in out.tool_calls] == \
        [("a", {"x": 1}), ("b", {"y": 2}), ("c", {})]
    assert len({c["id"] for c in out.tool_calls}) == 3


def test_parse_invalid_blocks_and_plain_text():
    out = parse_tool_calls('<tool_call>{"name": "a", "arguments": {oops}</tool_call>', new_id=new_id)
    assert out.tool_calls == [] and out.invalid == ['{"name": "a", "arguments": {oops}'] and out.content is None
    plain = parse_tool_calls("  Just an answer.  ")
    assert plain.content == "Just an answer." and plain.tool_calls == [] and plain.invalid == []


def test_default_ids_look_like_openai():
    out = parse_tool_calls(call_text({"name": "a", "arguments": {}}))
    assert out.tool_calls[0]["id"].startswith("call_") and len(out.tool_calls[0]["id"]) > 10


@pytest.mark.parametrize("predicted, expected, scores", [
    ('<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>', [{"name": "f", "arguments": {"a": 1}}],
     {"name": True, "valid_json": True, "exact": True}),
    ('<tool_call>{"name": "f", "arguments": {"a": 2}}</tool_call>', [{"name": "f", "arguments": {"a": 1}}],
     {"name": True, "valid_json": True, "exact": False}),
    ('<tool_call>{"name": "g", "arguments": {"a": 1}}</tool_call>', [{"name": "f", "arguments": {"a": 1}}],
     {"name": False, "valid_json": True, "exact": False}),
    ("no call", [{"name": "f", "arguments": {"a": 1}}], {"name": False, "valid_json": False, "exact": False}),
])
def test_score_calls(predicted, expected, scores):
    assert score_calls(parse_tool_calls(predicted, new_id=new_id).tool_calls, expected) == scores


def test_textualise_puts_tools_in_system_and_results_in_one_user_turn():
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "", "tool_calls": [call, call]},
                {"role": "tool", "content": "21"}, {"role": "tool", "content": "22"},
                {"role": "assistant", "content": "Warm."}]
    out = textualise(messages, [{"type": "function", "function": FN}])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools") and '"get_weather"' in out[0]["content"]
    assert out[2]["content"] == call_text(call) + "\n" + call_text(call)
    assert out[3]["content"] == "<tool_response>\n21\n</tool_response>\n<tool_response>\n22\n</tool_response>"
    assert all(set(m) == {"role", "content"} for m in out)
