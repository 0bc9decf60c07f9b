"""convert: every conversation layout round-trips through every other (same samples after);
tool calls survive sharegpt ↔ messages; LLaMA-Factory's preference and KTO demo files convert to
each preference/KTO layout and back; a pair becomes SFT data (its chosen answer); what a layout
cannot hold is an error with file:line; a registered format with to_row is a writer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from danlu.chat.messages import Conversation, Preference, RowError, Unpaired
from danlu.data.dataset import iter_samples
from danlu.data.formats import Format, register_format
from danlu.errors import DataError
from danlu.workbench.convert import WRITERS, convert_data, detect, reader_for, writer_for
from tests.conftest import write_jsonl

INTEROP = next((p / "shared" / "interop" / "llamafactory" for p in Path(__file__).resolve().parents
                if (p / "shared" / "interop" / "llamafactory").is_dir()), Path("/nonexistent"))
CONVERSATIONS = [
    {"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.", "history": [["Hi", "Hi!"]]},
    {"instruction": "What is 2+2?", "input": "", "output": "4"},
]
TOOLS = {"conversations": [
    {"from": "human", "value": "Weather in Paris?"},
    {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
    {"from": "observation", "value": '{"temp": 21}'},
    {"from": "gpt", "value": "21 degrees."}],
    "tools": '[{"name": "weather", "description": "Current weather", "parameters": {"type": "object"}}]'}


def _samples(path: Path, fmt: str = "auto") -> list:
    return [reader_for(fmt if fmt != "auto" else detect(json.loads(line)))(json.loads(line))
            for line in path.read_text().splitlines()]


def _strip(samples):
    for s in samples:
        s.where = ""
    return samples


@pytest.mark.parametrize("to", ["messages", "sharegpt", "alpaca"])
def test_conversations_round_trip(tmp_path, to):
    src = write_jsonl(tmp_path / "d.jsonl", CONVERSATIONS)
    s = convert_data(str(src), to, str(tmp_path / f"{to}.jsonl"))
    assert s.rows_out == 2 and s.counts == {"from": "alpaca", "to": to}
    back = convert_data(str(tmp_path / f"{to}.jsonl"), "alpaca", str(tmp_path / "back.jsonl"))
    assert back.counts["from"] == to
    assert _strip(_samples(tmp_path / "back.jsonl")) == _strip(_samples(src))
    # what danlu train reads: the same conversations
    assert [x.messages for x in iter_samples(str(tmp_path / f"{to}.jsonl"))] == [x.messages for x in iter_samples(str(src))]


def test_tool_calls_survive_sharegpt_and_messages(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [TOOLS])
    convert_data(str(src), "messages", str(tmp_path / "m.jsonl"))
    convert_data(str(tmp_path / "m.jsonl"), "sharegpt", str(tmp_path / "s.jsonl"))
    a, b = _samples(src), _samples(tmp_path / "s.jsonl")
    assert a[0].messages == b[0].messages and a[0].tools == b[0].tools
    assert a[0].messages[1]["tool_calls"][0]["function"]["name"] == "weather"
    with pytest.raises(DataError, match=r"d\.jsonl:1: alpaca cannot hold tool calls"):
        convert_data(str(src), "alpaca", str(tmp_path / "a.jsonl"))


def test_prompt_response_refuses_multi_turn_with_line(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", CONVERSATIONS[1:] + CONVERSATIONS[:1])
    with pytest.raises(DataError, match=r"d\.jsonl:2: prompt_response holds one question"):
        convert_data(str(src), "prompt_response", str(tmp_path / "p.jsonl"))
    s = convert_data(str(src), "prompt_response", str(tmp_path / "p.jsonl"), on_bad_row="skip")
    assert s.rows_out == 1 and s.dropped == {"cannot convert": 1}
    assert not list(tmp_path.glob(".p.jsonl.tmp-*"))


@pytest.mark.parametrize("layout", ["preference", "messages_preference", "sharegpt_preference", "alpaca_preference"])
def test_preference_layouts_round_trip(tmp_path, layout):
    src = INTEROP / "dpo_zh_demo.json"
    if not src.exists():
        pytest.skip("LLaMA-Factory demo data not found")
    out = tmp_path / f"{layout}.jsonl"
    s = convert_data(str(src), layout, str(out), on_bad_row="skip")
    # stages-a registers the preference layouts as formats, so the reader names the layout it found
    assert s.counts["from"].endswith("preference") and s.rows_out > 0.9 * s.rows_in
    original = {json.dumps(p.prompt + p.chosen + p.rejected, ensure_ascii=False) for p in _samples_json(src)}
    again = _samples(out)
    assert all(isinstance(p, Preference) for p in again)
    assert {json.dumps(p.prompt + p.chosen + p.rejected, ensure_ascii=False) for p in again} <= original


def _samples_json(path: Path) -> list:
    from danlu.data.readers import read_rows

    from danlu.workbench.convert import detect

    return [reader_for(detect(r.data))(r.data) for r in read_rows(str(path))]


PAIR = Preference([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Capital of France?"}],
                  [{"role": "assistant", "content": "Paris."}], [{"role": "assistant", "content": "Lyon."}])
PREFERENCE_LAYOUTS = {
    "TRL explicit prompt": {"system": "Be kind.", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    "TRL conversational": {"prompt": PAIR.prompt, "chosen": PAIR.chosen, "rejected": PAIR.rejected},
    "TRL implicit prompt": {"chosen": PAIR.prompt + PAIR.chosen, "rejected": PAIR.prompt + PAIR.rejected},
    "LLaMA-Factory sharegpt": {"system": "Be kind.", "conversations": [{"from": "human", "value": "Capital of France?"}],
                               "chosen": {"from": "gpt", "value": "Paris."}, "rejected": {"from": "gpt", "value": "Lyon."}},
    "LLaMA-Factory alpaca": {"system": "Be kind.", "instruction": "Capital of France?", "input": "", "chosen": "Paris.",
                             "rejected": "Lyon."},
}


@pytest.mark.parametrize("layout", list(PREFERENCE_LAYOUTS))
def test_each_preference_layout_reads_and_writes(tmp_path, layout):
    src = write_jsonl(tmp_path / "d.jsonl", [PREFERENCE_LAYOUTS[layout]])
    for to in ("preference", "messages_preference", "sharegpt_preference", "alpaca_preference"):
        convert_data(str(src), to, str(tmp_path / f"{to}.jsonl"))
        (again,) = _strip(_samples(tmp_path / f"{to}.jsonl"))
        assert again == PAIR, (layout, to)


def test_preference_as_sft_and_kto(tmp_path):
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    convert_data(str(src), "messages", str(tmp_path / "m.jsonl"))
    assert json.loads((tmp_path / "m.jsonl").read_text())["messages"] == [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    kto = INTEROP / "kto_en_demo.json"
    if kto.exists():
        s = convert_data(str(kto), "kto", str(tmp_path / "k.jsonl"), on_bad_row="skip")
        assert s.counts["from"] in ("kto", "messages_unpaired") and s.rows_out > 0
        back = _samples(tmp_path / "k.jsonl")
        assert all(isinstance(u, Unpaired) and isinstance(u.label, bool) for u in back)
        convert_data(str(tmp_path / "k.jsonl"), "messages_kto", str(tmp_path / "mk.jsonl"))
        assert [(u.prompt, u.completion, u.label) for u in _samples(tmp_path / "mk.jsonl")] == \
               [(u.prompt, u.completion, u.label) for u in back]


def test_registered_format_with_to_row_is_a_writer(tmp_path):
    @register_format("test_qa_pairs")
    class QAPairs(Format):
        kind = "conversation"
        priority = 99

        @classmethod
        def detect(cls, row):
            return False

        def convert(self, row, opts):
            return Conversation([{"role": "user", "content": row["q"]}, {"role": "assistant", "content": row["a"]}])

        def to_row(self, sample):
            return {"q": sample.messages[-2]["content"], "a": sample.messages[-1]["content"]}

    assert "test_qa_pairs" not in WRITERS and writer_for("test_qa_pairs").kind == "conversation"
    src = write_jsonl(tmp_path / "d.jsonl", CONVERSATIONS[1:])
    convert_data(str(src), "test_qa_pairs", str(tmp_path / "q.jsonl"))
    assert json.loads((tmp_path / "q.jsonl").read_text()) == {"q": "What is 2+2?", "a": "4"}
    convert_data(str(tmp_path / "q.jsonl"), "alpaca", str(tmp_path / "a.jsonl"), from_="test_qa_pairs")
    assert json.loads((tmp_path / "a.jsonl").read_text())["output"] == "4"


USER, ANSWER = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}


@pytest.mark.parametrize("row", [
    {"prompt": "q", "completion": "a", "label": "no"},  # a CSV-style label: False, as training reads it
    {"messages": [USER, ANSWER], "kto_tag": True},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "label": 1},
    {"prompt": [USER], "chosen": [ANSWER], "rejected": "b", "system": "Be brief."},
])
def test_convert_reads_preference_and_kto_rows_as_training_does(tmp_path, row):
    """One parser: `danlu data convert` (auto and --from kto) gives the sample `danlu train` reads."""
    kind = "unpaired" if "chosen" not in row else "preference"
    (trained,) = iter_samples(str(write_jsonl(tmp_path / "d.jsonl", [row])), kinds=(kind,), on_bad_row="error")
    trained = replace(trained, where="")
    assert reader_for(detect(row))(row) == trained
    if kind == "unpaired":
        assert reader_for("kto")(row) == trained and trained.label is (row.get("label", row.get("kto_tag")) not in ("no",))


def test_convert_refuses_a_kto_row_training_refuses(tmp_path):
    row = {"messages": [USER, ANSWER, {"role": "assistant", "content": "more"}], "label": True}
    with pytest.raises(DataError):
        list(iter_samples(str(write_jsonl(tmp_path / "d.jsonl", [row])), kinds=("unpaired",), on_bad_row="error"))
    with pytest.raises(RowError):
        reader_for("kto")(row)
