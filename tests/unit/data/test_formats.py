"""Every data format, auto-detection, and every kind of bad row with file:line under both policies."""

from __future__ import annotations

import json

import pytest

from danlu.chat.messages import Conversation, Text
from danlu.data.dataset import iter_samples
from danlu.data.report import DataReport
from danlu.errors import DataError
from tests.conftest import write_jsonl

ROWS = {
    "alpaca": {"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.",
               "history": [["Hi", "Hi!"]]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
                 "system": "Be brief."},
    "messages": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello"}]},
    "prompt_response": {"prompt": "Hi", "response": "Hello"},
    "text": {"text": "Plain text for continued pretraining."},
}


@pytest.mark.parametrize("fmt", list(ROWS))
@pytest.mark.parametrize("explicit", [False, True])
def test_each_format_reads(tmp_path, fmt, explicit):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[fmt]] * 2)
    report = DataReport()
    samples = list(iter_samples(str(path), fmt=fmt if explicit else "auto", report=report))
    assert len(samples) == 2 and report.rows_read == 2
    assert report.formats[str(path)] == fmt
    s = samples[0]
    assert s.where == f"{path}:1"
    if fmt == "text":
        assert isinstance(s, Text) and s.text.startswith("Plain")
    else:
        assert isinstance(s, Conversation)
        assert s.messages[-1] == {"role": "assistant", "content": "Hello"}
        if fmt in ("alpaca", "sharegpt", "messages"):
            assert s.messages[0] == {"role": "system", "content": "Be brief."}
    if fmt == "alpaca":
        roles = [m["role"] for m in s.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant"]
        assert s.messages[3]["content"] == "Translate\n你好"


@pytest.mark.parametrize("suffix", ["json", "csv", "parquet"])
def test_other_file_types(tmp_path, suffix):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    path = tmp_path / f"d.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    elif suffix == "csv":
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"])
            w.writeheader()
            w.writerows(rows)
    else:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    samples = list(iter_samples(str(path)))
    assert [s.messages[-1]["content"] for s in samples] == ["a0", "a1", "a2"]
    if suffix == "json":
        assert samples[1].where == f"{path}:7"  # each array item's own line
    if suffix == "csv":
        assert samples[0].where == f"{path}:2"


BAD = [
    ('{"instruction": "q", "output": "a"', "invalid JSON"),
    ({"instruction": "q"}, "missing field"),
    ({"instruction": "q", "output": "  "}, "empty assistant turn"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}, "wrong role order"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
                   {"role": "assistant", "content": "a"}]}, "wrong role order"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}, "empty assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}]}, "wrong role order"),
]


@pytest.mark.parametrize("row, category", BAD)
def test_bad_rows_skip_counts_and_reports_file_line(tmp_path, row, category):
    good = {"instruction": "q", "input": "", "output": "a"}
    fmt = "messages" if isinstance(row, dict) and "messages" in row else "auto"
    rows = [good if fmt == "auto" else {"messages": [{"role": "user", "content": "q"},
                                                       {"role": "assistant", "content": "a"}]}, row]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    report = DataReport()
    samples = list(iter_samples(str(path), fmt=fmt, report=report))
    assert len(samples) == 1 and report.rows_read == 2
    assert report.dropped[category]["count"] == 1
    assert report.dropped[category]["rows"][0]["where"] == f"{path}:2"


@pytest.mark.parametrize("row, category", BAD)
def test_bad_rows_error_policy_names_file_line(tmp_path, row, category):
    fmt = "messages" if isinstance(row, dict) and "messages" in row else "alpaca"
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError) as err:
        list(iter_samples(str(path), fmt=fmt, on_bad_row="error"))
    assert f"{path}:1" in str(err.value)


def test_unknown_layout_is_reported(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "a": "y"}])
    report = DataReport()
    assert list(iter_samples(str(path), report=report)) == []
    assert report.num_dropped == 1


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(iter_samples(str(tmp_path / "nope.jsonl")))
