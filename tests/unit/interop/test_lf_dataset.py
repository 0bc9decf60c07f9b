"""lf:NAME sources read a LLaMA-Factory dataset_info.json entry as LLaMA-Factory does: layouts,
columns and tags mappings (a given mapping replaces every default), ranking and KTO rows,
num_samples, files and folders, and clear errors for entries danlu cannot read."""

from __future__ import annotations

import json
import logging

import pytest

from danlu.chat.messages import Conversation, Preference, Prompt, Text, Unpaired
from danlu.data.dataset import iter_samples
from danlu.data.formats import FormatOptions
from danlu.data.report import DataReport
from danlu.errors import DataError
from tests.conftest import write_jsonl

ALL_KINDS = ("conversation", "text", "preference", "unpaired")


def lf_dir(tmp_path, entries: dict, files: dict) -> str:
    """A dataset dir: dataset_info.json with `entries`, and data files {name: rows | text}."""
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif name.endswith(".jsonl"):
            write_jsonl(path, content)
        else:
            path.write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")
    return str(tmp_path)


def reasons(report: DataReport) -> str:
    return "\n".join(f"{r['where']}: {r['reason']}" for e in report.dropped.values() for r in e["rows"])


def load(d: str, name: str, kinds=ALL_KINDS, report=None, **opts):
    return list(iter_samples(f"lf:{name}", kinds=kinds, opts=FormatOptions(dataset_dir=d, **opts), report=report))


def test_alpaca_default_columns_and_history_only_when_mapped(tmp_path):
    row = {"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.",
           "history": [["Hi", "Hi!"]]}
    d = lf_dir(tmp_path, {"plain": {"file_name": "a.json"},
                          "mapped": {"file_name": "a.json", "columns": {"prompt": "instruction", "query": "input",
                                                                         "response": "output", "system": "system",
                                                                         "history": "history"}}},
               {"a.json": [row]})
    (plain,) = load(d, "plain")
    # without a columns mapping LLaMA-Factory reads neither system nor history
    assert plain.messages == [{"role": "user", "content": "Translate\n你好"}, {"role": "assistant", "content": "Hello"}]
    (mapped,) = load(d, "mapped")
    assert [m["role"] for m in mapped.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert mapped.messages[0]["content"] == "Be brief." and mapped.messages[3]["content"] == "Translate\n你好"


def test_a_columns_mapping_replaces_every_default(tmp_path):
    """columns {prompt: question, response: answer}: 'input' is no longer read (query unnamed)."""
    d = lf_dir(tmp_path, {"qa": {"file_name": "qa.jsonl", "columns": {"prompt": "question", "response": "answer"}}},
               {"qa.jsonl": [{"question": "Q?", "input": "ignored", "answer": "A."}]})
    (s,) = load(d, "qa")
    assert s.messages == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]


def test_alpaca_without_response_column_is_text(tmp_path):
    d = lf_dir(tmp_path, {"c4": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}}},
               {"c4.jsonl": [{"text": "Plain web text."}, {"text": "  "}]})
    report = DataReport()
    samples = load(d, "c4", report=report)
    assert [type(s) for s in samples] == [Text] and samples[0].text == "Plain web text."
    assert report.rows_read == 2 and "c4.jsonl:2: empty text" in reasons(report)


SHAREGPT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}


def test_sharegpt_tags_and_system_turn(tmp_path):
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                        {"role": "assistant", "content": "A"}]}
    d = lf_dir(tmp_path, {"with_sys": {"file_name": "m.json", "formatting": "sharegpt",
                                       "columns": {"messages": "messages"}, "tags": SHAREGPT_TAGS},
                          "no_sys_tag": {"file_name": "m.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                                         "tags": {k: v for k, v in SHAREGPT_TAGS.items() if k != "system_tag"}}},
               {"m.json": [row]})
    (s,) = load(d, "with_sys")
    assert s.messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                          {"role": "assistant", "content": "A"}]
    # tags given without system_tag: the system turn is out of turn, the row is broken (as in LLaMA-Factory)
    report = DataReport()
    assert load(d, "no_sys_tag", report=report) == []
    assert "turn 1 has role 'system'" in reasons(report)


@pytest.mark.parametrize("turns, reason", [
    ([("human", "Q"), ("human", "Q2"), ("gpt", "A")], "turn 2 has role 'human'"),
    ([("human", "Q"), ("gpt", "A"), ("human", "Q2")], "3 turns; the conversation must end with the assistant"),
    ([("gpt", "A"), ("human", "Q")], "turn 1 has role 'gpt'"),
])
def test_sharegpt_turn_order_as_llamafactory(tmp_path, turns, reason):
    rows = [{"conversations": [{"from": f, "value": v} for f, v in turns]}]
    d = lf_dir(tmp_path, {"x": {"file_name": "x.json", "formatting": "sharegpt"}}, {"x.json": rows})
    report = DataReport()
    assert load(d, "x", report=report) == []
    assert "x.json:2: wrong role order" in reasons(report) and reason in reasons(report)


def test_ranking_alpaca_and_sharegpt_give_preference(tmp_path):
    d = lf_dir(tmp_path, {
        "pa": {"file_name": "pa.json", "ranking": True,
               "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "ps": {"file_name": "ps.json", "ranking": True, "formatting": "sharegpt",
               "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
    }, {"pa.json": [{"instruction": "Q", "input": "", "chosen": "good", "rejected": "bad"}],
        "ps.json": [{"conversations": [{"from": "human", "value": "Q"}],
                     "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}]})
    for name in ("pa", "ps"):
        (s,) = load(d, name)
        assert isinstance(s, Preference)
        assert s.prompt == [{"role": "user", "content": "Q"}]
        assert s.chosen == [{"role": "assistant", "content": "good"}]
        assert s.rejected == [{"role": "assistant", "content": "bad"}]


def test_kto_tag_gives_unpaired(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "label": v}
            for v in (True, False, "maybe")]
    d = lf_dir(tmp_path, {"k": {"file_name": "k.json", "formatting": "sharegpt",
                                "columns": {"messages": "messages", "kto_tag": "label"}, "tags": SHAREGPT_TAGS}},
               {"k.json": rows})
    report = DataReport()
    samples = load(d, "k", report=report)
    assert [type(s) for s in samples] == [Unpaired, Unpaired] and [s.label for s in samples] == [True, False]
    assert samples[0].prompt == [{"role": "user", "content": "Q"}]
    assert samples[0].completion == [{"role": "assistant", "content": "A"}]
    assert "must be true or false" in reasons(report)


def test_stage_that_cannot_use_the_entry_is_exit_2(tmp_path):
    d = lf_dir(tmp_path, {"p": {"file_name": "p.json", "ranking": True,
                                "columns": {"prompt": "q", "chosen": "c", "rejected": "r"}}},
               {"p.json": [{"q": "Q", "c": "good", "r": "bad"}]})
    with pytest.raises(DataError, match=r"lf:p: dataset 'p' holds preference rows.*\n.*dpo") as exc:
        load(d, "p", kinds=("conversation", "text"))
    assert exc.value.exit_code == 2
    # a prompt-only stage (ppo, grpo) reads the prompts
    (s,) = load(d, "p", kinds=("prompt",))
    assert isinstance(s, Prompt) and s.prompt == [{"role": "user", "content": "Q"}]


def test_num_samples_subsamples_then_repeats(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)]
    d = lf_dir(tmp_path, {"few": {"file_name": "r.jsonl", "num_samples": 4},
                          "many": {"file_name": "r.jsonl", "num_samples": 25}}, {"r.jsonl": rows})
    few = [s.messages[0]["content"] for s in load(d, "few")]
    assert len(few) == 4 and len(set(few)) == 4 and few == [s.messages[0]["content"] for s in load(d, "few")]
    many = [s.messages[0]["content"] for s in load(d, "many")]
    assert len(many) == 25 and set(many) == {f"q{i}" for i in range(10)}  # every row once, then repeats


def test_folder_json_lines_and_txt(tmp_path):
    d = lf_dir(tmp_path, {"folder": {"file_name": "parts"}, "mixed": {"file_name": "mixed"},
                          "jsonl_in_json": {"file_name": "lines.json"},
                          "wiki": {"file_name": "wiki.txt", "columns": {"prompt": "text"}}},
               {"parts/a.jsonl": [{"instruction": "q1", "output": "a1"}],
                "parts/b.jsonl": [{"instruction": "q2", "output": "a2"}],
                "mixed/a.jsonl": [{"instruction": "q1", "output": "a1"}], "mixed/b.csv": "instruction,output\nq,a\n",
                "lines.json": '{"instruction": "q1", "output": "a1"}\n{"instruction": "q2", "output": "a2"}\n',
                "wiki.txt": "line one\n\nline two\n"})
    assert [s.where.split("/")[-1] for s in load(d, "folder")] == ["a.jsonl:1", "b.jsonl:1"]
    with pytest.raises(DataError, match="must all be of one type"):
        load(d, "mixed")
    assert [s.where.split("/")[-1] for s in load(d, "jsonl_in_json")] == ["lines.json:1", "lines.json:2"]
    texts = load(d, "wiki")
    assert [t.text for t in texts] == ["line one", "line two"] and texts[1].where.endswith("wiki.txt:3")


@pytest.mark.parametrize("entry, match", [
    ({"hf_hub_url": "org/ds"}, r"lf:e: dataset 'e' is on the Hugging Face hub \(org/ds\) and danlu is offline"),
    ({"ms_hub_url": "org/ds"}, r"lf:e: dataset 'e' is on ModelScope"),
    ({"script_url": "my_script"}, r"lf:e: dataset 'e' needs the loading script 'my_script'"),
    ({"file_name": "absent.json"}, r"lf:e: file 'absent.json' of dataset 'e' not found"),
    ({"file_name": "m.json", "formatting": "sharegpt", "columns": {"messages": "m", "videos": "videos"}},
     r"entry 'e' has videos columns"),
    ({"file_name": "x.json", "formatting": "weird"}, r"unknown formatting 'weird'"),
])
def test_entries_danlu_cannot_read_say_why(tmp_path, monkeypatch, entry, match):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = lf_dir(tmp_path, {"e": entry}, {})
    with pytest.raises(DataError, match=match) as exc:
        load(d, "e")
    assert exc.value.exit_code == 2


def test_unknown_name_and_missing_info(tmp_path):
    d = lf_dir(tmp_path, {"alpaca_en_demo": {"file_name": "a.json"}}, {})
    with pytest.raises(DataError, match="did you mean lf:alpaca_en_demo"):
        load(d, "alpaca_en_dem")
    with pytest.raises(DataError, match="data.dataset_dir: no dataset_info.json in"):
        load(str(tmp_path / "nowhere"), "x")


def test_placeholders_fill_every_kind_and_unfilled_ones_warn(tmp_path, caplog):
    d = lf_dir(tmp_path, {"id": {"file_name": "id.json"},
                          "p": {"file_name": "p.json", "ranking": True,
                                "columns": {"prompt": "q", "chosen": "c", "rejected": "r"}}},
               {"id.json": [{"instruction": "Who are you?", "input": "", "output": "I am {{name}} by {{author}}."}],
                "p.json": [{"q": "Name?", "c": "{{name}}", "r": "ChatGPT"}]})
    names = {"name": "Acme助手", "author": "Acme"}
    (s,) = load(d, "id", placeholders=names)
    assert s.messages[-1]["content"] == "I am Acme助手 by Acme."
    (p,) = load(d, "p", placeholders=names)
    assert p.chosen[0]["content"] == "Acme助手"
    with caplog.at_level(logging.WARNING, logger="danlu.data.dataset"):
        load(d, "id")
    assert "{{author}}, {{name}}" in caplog.text and "data.placeholders" in caplog.text


def test_openai_formatting_with_tool_calls(tmp_path):
    row = {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "c1"},
        {"role": "assistant", "content": "21°C."}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}
    d = lf_dir(tmp_path, {"o": {"file_name": "o.json", "formatting": "openai",
                                "columns": {"messages": "messages", "tools": "tools"}, "tags": tags}}, {"o.json": [row]})
    (s,) = load(d, "o")
    assert [m["role"] for m in s.messages] == ["user", "assistant", "tool", "assistant"]
    assert s.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert s.tools[0]["function"]["name"] == "get_weather"
