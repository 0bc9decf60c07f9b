"""mix: weights and counts give exactly the rows asked for, rows repeat only when an input has
too few, the seed fixes the result, inputs of different formats are refused unless converted."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from danlu.errors import UserError
from danlu.workbench.mix import MixOptions, mix_data, plan_counts
from tests.conftest import write_jsonl


def _inputs(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "input": "", "output": "x"} for i in range(100)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"b{i}", "input": "", "output": "y"} for i in range(30)])
    return str(a), str(b)


def _sources(path) -> list[str]:
    return [json.loads(line)["instruction"][0] for line in path.read_text().splitlines()]


def test_weights_and_counts(tmp_path):
    a, b = _inputs(tmp_path)
    s = mix_data([a, b], str(tmp_path / "w.jsonl"), MixOptions(weights=(0.75, 0.25), total=80))
    assert Counter(_sources(tmp_path / "w.jsonl")) == {"a": 60, "b": 20} and s.rows_out == 80
    rows = [json.loads(line)["instruction"] for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert len(set(rows)) == 80  # enough rows: none repeated
    order = _sources(tmp_path / "w.jsonl")
    assert order != sorted(order)  # interleaved, not concatenated
    mix_data([a, b], str(tmp_path / "c.jsonl"), MixOptions(counts=(10, 45)))
    rows = [json.loads(line)["instruction"] for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    b_rows = Counter(r for r in rows if r[0] == "b")
    assert sum(b_rows.values()) == 45 and set(b_rows.values()) == {1, 2}  # 30 rows: one full repeat plus 15


def test_largest_mix_without_repeats():
    assert plan_counts([100, 30], MixOptions(weights=(0.5, 0.5))) == [30, 30]
    assert plan_counts([100, 30], MixOptions()) == [30, 30]


def test_seeded(tmp_path):
    a, b = _inputs(tmp_path)
    outs = []
    for i, seed in enumerate((1, 1, 2)):
        mix_data([a, b], str(tmp_path / f"m{i}.jsonl"), MixOptions(weights=(0.5, 0.5), seed=seed))
        outs.append((tmp_path / f"m{i}.jsonl").read_text())
    assert outs[0] == outs[1] != outs[2]


def test_formats_must_match_or_be_converted(tmp_path):
    a, _ = _inputs(tmp_path)
    c = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": f"c{i}"},
                                                         {"role": "assistant", "content": "z"}]} for i in range(10)])
    with pytest.raises(UserError, match="different formats"):
        mix_data([a, str(c)], str(tmp_path / "m.jsonl"))
    mix_data([a, str(c)], str(tmp_path / "m.jsonl"), MixOptions(counts=(5, 5), to="messages"))
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(list(r) == ["messages"] for r in rows)
