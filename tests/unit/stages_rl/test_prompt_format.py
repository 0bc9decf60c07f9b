"""Prompt-only rows for the RL stages: a `prompt` field (text or messages) or `messages` (the
reference answer is left out); other fields are kept for reward functions; bad rows name why."""

from __future__ import annotations

import pytest

from danlu.chat.messages import Prompt
from danlu.data.dataset import iter_samples
from danlu.data.formats import FormatOptions
from danlu.data.report import DataReport
from danlu.errors import DataError
from tests.conftest import write_jsonl

ROWS = [
    ({"prompt": "What is FlowDesk?", "topic": "product"}, "prompt",
     [{"role": "user", "content": "What is FlowDesk?"}], {"topic": "product"}),
    ({"prompt": "Hi", "response": "Hello", "system": "Be brief."}, "prompt",
     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], {"response": "Hello"}),
    ({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                 {"role": "user", "content": "c"}]}, "prompt",
     [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], {}),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "reference"}], "id": 7},
     "prompt_messages", [{"role": "user", "content": "q"}], {"id": 7}),
    ({"instruction": "Translate", "input": "你好", "output": "Hello", "history": [["Hi", "Hi!"]], "lang": "en"},
     "prompt_alpaca", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi!"},
                       {"role": "user", "content": "Translate\n你好"}], {"lang": "en"}),
]


@pytest.mark.parametrize("row, fmt, messages, extra", ROWS)
@pytest.mark.parametrize("explicit", [False, True])
def test_prompt_rows(tmp_path, row, fmt, messages, extra, explicit):
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    report = DataReport()
    samples = list(iter_samples(str(path), fmt=fmt if explicit else "auto", kinds=("prompt",), report=report))
    assert len(samples) == 1 and isinstance(samples[0], Prompt)
    assert samples[0].prompt == messages and samples[0].extra == extra
    assert report.formats[str(path)] == fmt and samples[0].where == f"{path}:1"


def test_default_system_prompt_and_placeholders(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Tell me about {{product}}."}])
    opts = FormatOptions(system="You answer for {{product}}.", placeholders={"product": "FlowDesk"})
    (s,) = iter_samples(str(path), kinds=("prompt",), opts=opts)
    assert s.prompt == [{"role": "system", "content": "You answer for FlowDesk."},
                        {"role": "user", "content": "Tell me about FlowDesk."}]


def test_sft_rows_still_read_as_conversations(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "response": "Hello"}])
    (s,) = iter_samples(str(path))  # the SFT kinds: prompt_response, not prompt
    assert s.messages[-1] == {"role": "assistant", "content": "Hello"}


BAD = [
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "must end with a user turn"),
    ({"prompt": "   "}, "is empty"),
    ({"prompt": ["not a message"]}, "must be an object"),
    ({"question": "q"}, "missing field 'prompt'"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "no user turn"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                   {"role": "user", "content": "q2"}]}, "wrong role order"),
]


@pytest.mark.parametrize("row, words", BAD)
def test_bad_prompt_rows(tmp_path, row, words):
    good = {"messages": [{"role": "user", "content": "fine"}]} if "messages" in row else {"prompt": "fine"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, row])
    report = DataReport()
    kept = list(iter_samples(str(path), kinds=("prompt",), report=report))
    assert len(kept) == 1 and report.num_dropped == 1
    (entry,) = report.dropped.values()
    assert entry["rows"][0]["where"] == f"{path}:2" and words in entry["rows"][0]["reason"]
    with pytest.raises(DataError) as info:
        list(iter_samples(str(path), kinds=("prompt",), on_bad_row="error"))
    assert f"{path}:2" in str(info.value)


def test_rows_of_no_prompt_format_are_reported(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q"}])
    report = DataReport()
    assert list(iter_samples(str(path), kinds=("prompt",), report=report)) == []
    assert "no known prompt format" in next(iter(report.dropped.values()))["rows"][0]["reason"]
