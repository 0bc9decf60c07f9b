"""Golden label tests for tool-calling data: the ids are exactly the chat template's output (with
the tools), the assistant's tool calls and answers carry labels (each with its turn end), tool
results and tool definitions never do — through a template with tools (builtin:tiny's Qwen2.5-
style one) and through one without (danlu's text form of calls and results)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from danlu.chat.messages import Conversation
from danlu.chat.templates import resolve_template
from danlu.chat.tools import call_text, template_supports_tools
from danlu.data.encode import IGNORE, encode_conversation

FN = {"name": "get_weather", "description": "Weather of a city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOLS = [{"type": "function", "function": FN}]


def call(city: str) -> dict:
    return {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


CONVS = {
    "one call": [{"role": "user", "content": "Weather in Paris?"},
                 {"role": "assistant", "content": "", "tool_calls": [call("Paris")]},
                 {"role": "tool", "content": '{"temp": 21, "sky": "OBSERVATION_TEXT"}'},
                 {"role": "assistant", "content": "It is 21°C in Paris."}],
    "two calls, text first, zh": [
        {"role": "system", "content": "你是天气助手。"},
        {"role": "user", "content": "巴黎和奥斯陆的天气？"},
        {"role": "assistant", "content": "我来查一下。", "tool_calls": [call("巴黎"), call("奥斯陆")]},
        {"role": "tool", "content": "巴黎 21 度 OBSERVATION_TEXT"}, {"role": "tool", "content": "奥斯陆 3 度 OBSERVATION_TEXT"},
        {"role": "assistant", "content": "巴黎 21°C，奥斯陆 3°C。"},
        {"role": "user", "content": "谢谢"}, {"role": "assistant", "content": "不客气！"}],
}


def labelled(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


def expected_labels(messages, end="<|im_end|>") -> str:
    out = []
    for m in messages:
        if m["role"] == "assistant":
            parts = ([m["content"]] if m.get("content") else []) + [call_text(c) for c in m.get("tool_calls", [])]
            out.append("\n".join(parts) + end)
    return "".join(out)


@pytest.mark.parametrize("name", list(CONVS))
def test_template_with_tools(tiny_tokenizer, name):
    tok = copy.deepcopy(tiny_tokenizer)
    tpl = resolve_template(tok, "auto")
    assert template_supports_tools(tok)
    messages = CONVS[name]
    enc = encode_conversation(Conversation(messages, tools=TOOLS), tpl)
    assert enc.input_ids == list(tok.apply_chat_template(messages, tools=TOOLS, tokenize=True)["input_ids"])
    assert labelled(tok, enc) == expected_labels(messages)
    text = labelled(tok, enc)
    assert "OBSERVATION_TEXT" not in text and "tool_response" not in text and "Weather of a city" not in text


@pytest.mark.parametrize("name", list(CONVS))
def test_template_without_tools_uses_the_text_form(tiny_tokenizer, name):
    tok = copy.deepcopy(tiny_tokenizer)
    tpl = resolve_template(tok, "default")  # "### Instruction / ### Response": knows no tools
    assert not template_supports_tools(tok)
    messages = CONVS[name]
    enc = encode_conversation(Conversation(messages, tools=TOOLS), tpl)
    full = tok.decode(enc.input_ids)
    assert "<tool_call>" in full and "<tool_response>" in full and "OBSERVATION_TEXT" in full
    assert '"description": "Weather of a city"' in full  # the tool list is in the prompt
    # the default template writes no end token: danlu appends EOS (<|im_end|> here) and labels it
    assert labelled(tok, enc) == expected_labels(messages)
    assert "OBSERVATION_TEXT" not in labelled(tok, enc)


def test_mask_history_keeps_only_the_final_answer(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tpl = resolve_template(tok, "auto")
    enc = encode_conversation(Conversation(CONVS["one call"], tools=TOOLS), tpl, mask_history=True)
    assert labelled(tok, enc) == "It is 21°C in Paris.<|im_end|>"


def test_glaive_row_from_llamafactory_layout(tiny_tokenizer, tmp_path):
    """A LLaMA-Factory glaive row (sharegpt, function_call / observation, tools as a JSON string)."""
    import json

    from danlu.data.dataset import iter_samples
    from tests.conftest import write_jsonl

    row = {"conversations": [
        {"from": "human", "value": "Convert 100 USD to EUR"},
        {"from": "function_call", "value": '{"name": "convert", "arguments": {"amount": 100, "from": "USD", "to": "EUR"}}'},
        {"from": "observation", "value": '{"converted": 92.5, "note": "OBSERVATION_TEXT"}'},
        {"from": "gpt", "value": "100 USD is 92.50 EUR."}],
        "tools": json.dumps([{"name": "convert", "description": "Convert currency", "parameters": {"type": "object"}}])}
    (sample,) = list(iter_samples(str(write_jsonl(tmp_path / "g.jsonl", [row]))))
    tok = copy.deepcopy(tiny_tokenizer)
    enc = encode_conversation(sample, resolve_template(tok, "auto"))
    assert labelled(tok, enc) == ('<tool_call>\n{"name": "convert", "arguments": {"amount": 100, "from": "USD", '
                                  '"to": "EUR"}}\n</tool_call><|im_end|>100 USD is 92.50 EUR.<|im_end|>')


# A template in the manner of Mistral's: the tool list goes before the LAST user turn (so a prefix
# of the conversation renders differently from the whole), calls need 9-character ids and results
# the id of their call. danlu gives calls without ids deterministic ones and finds each turn by
# rendering the conversation with that turn replaced.
MISTRALISH = (
    "{%- set ns = namespace(last=-1) %}{%- for m in messages %}{%- if m.role == 'user' %}"
    "{%- set ns.last = loop.index0 %}{%- endif %}{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' %}{%- if tools and loop.index0 == ns.last %}"
    "[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{%- endif %}[INST] {{ m.content }}[/INST]"
    "{%- elif m.role == 'assistant' and m.tool_calls %}[TOOL_CALLS][{%- for c in m.tool_calls %}"
    "{%- if c.id is not defined or c.id | length != 9 %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}, "id": "{{ c.id }}"}'
    "{%- if not loop.last %}, {% endif %}{%- endfor %}]{{ eos_token }}"
    "{%- elif m.role == 'assistant' %} {{ m.content }}{{ eos_token }}"
    "{%- elif m.role == 'tool' %}{%- if m.tool_call_id is not defined or m.tool_call_id | length != 9 %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}"
    '[TOOL_RESULTS]{"content": {{ m.content | tojson }}, "call_id": "{{ m.tool_call_id }}"}[/TOOL_RESULTS]'
    "{%- endif %}{%- endfor %}"
)


def test_template_that_moves_tools_and_needs_call_ids(tiny_tokenizer, tmp_path):
    from danlu.chat.tools import with_call_ids

    jinja = tmp_path / "mistralish.jinja"
    jinja.write_text(MISTRALISH)
    tok = copy.deepcopy(tiny_tokenizer)
    tpl = resolve_template(tok, str(jinja))
    assert template_supports_tools(tok) and tpl.turn_end == "<|im_end|>"
    messages = CONVS["two calls, text first, zh"][1:]  # no system turn in this template
    enc = encode_conversation(Conversation(messages, tools=TOOLS), tpl)
    with_ids = with_call_ids(messages)
    ids = [c["id"] for c in with_ids[1]["tool_calls"]]
    assert all(len(i) == 9 and i.isalnum() for i in ids) and len(set(ids)) == 2
    assert with_ids[2]["tool_call_id"] == ids[0] and with_ids[3]["tool_call_id"] == ids[1]
    assert enc.input_ids == list(tok.apply_chat_template(with_ids, tools=TOOLS, tokenize=True)["input_ids"])
    calls = ", ".join('{"name": "get_weather", "arguments": {"city": "%s"}, "id": "%s"}' % (c, i)
                      for c, i in zip(("巴黎", "奥斯陆"), ids))
    # the text before the calls ("我来查一下。") is not written by this template; what it writes is
    # trained. The template's space before an answer is learned where BPE merges it into the
    # answer's first token (" 不"), as for any template whose prompt ends in a space.
    assert labelled(tok, enc) == f"[TOOL_CALLS][{calls}]<|im_end|>巴黎 21°C，奥斯陆 3°C。<|im_end|> 不客气！<|im_end|>"
    assert "[TOOL_RESULTS]" not in labelled(tok, enc) and "[AVAILABLE_TOOLS]" not in labelled(tok, enc)


def test_template_whose_every_prefix_renders_differently(tiny_tokenizer, tmp_path):
    """A header that counts the messages changes with every prefix: every turn is found by the
    replaced-turn rendering, and the labels are still exactly the assistant's turns."""
    jinja = tmp_path / "counting.jinja"
    jinja.write_text("<|im_start|>system\n{{ messages | length }} messages<|im_end|>\n"
                     + (Path(__file__).resolve().parents[3] / "src/danlu/models/assets/chatml_tools.jinja").read_text())
    tok = copy.deepcopy(tiny_tokenizer)
    tpl = resolve_template(tok, str(jinja))
    for messages in CONVS.values():
        enc = encode_conversation(Conversation(messages, tools=TOOLS), tpl)
        assert enc.input_ids == list(tok.apply_chat_template(messages, tools=TOOLS, tokenize=True)["input_ids"])
        assert labelled(tok, enc) == expected_labels(messages)
