"""split: near duplicates never straddle two splits; sizes follow the ratios exactly when every
row is its own cluster; stratified splits keep each label's share; the same seed gives the same
files and another seed other files."""

from __future__ import annotations

import json
import random

import pytest

from danlu.errors import UserError
from danlu.workbench.split import SplitOptions, quotas, split_data
from tests.conftest import write_jsonl

WORDS = "amber basalt cobalt dune ember fjord glacier harbor indigo jasper kelp lagoon meadow nectar onyx prairie " \
        "quartz reef savanna tundra umber valley willow xenon yarrow zephyr 竹子 松树 海洋 山峰 沙漠 森林 草原 湖泊".split()


def _sentence(rng: random.Random, n: int = 30) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _edit(rng: random.Random, text: str) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_near_duplicates_never_straddle(tmp_path):
    rng = random.Random(0)
    rows = []
    for c in range(40):  # 40 families of 2–5 near duplicates, plus 60 singletons
        base = _sentence(rng)
        rows += [{"text": base if k == 0 else _edit(rng, base), "family": c} for k in range(rng.randint(2, 5))]
    rows += [{"text": _sentence(rng), "family": 100 + i} for i in range(60)]
    rng.shuffle(rows)
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    s = split_data(str(src), str(tmp_path / "out"), SplitOptions(ratios=(0.6, 0.2, 0.2), seed=1))
    where = _families(tmp_path / "out")
    assert all(len(splits) == 1 for splits in where.values()), {f: s for f, s in where.items() if len(s) > 1}
    assert s.rows_out == len(rows) and s.counts["clusters kept whole"] == 40
    assert all(s.counts[f"{k} rows"] > 0 for k in ("train", "val", "test"))
    # control: grouping only exact duplicates lets families straddle, so the property above is earned
    split_data(str(src), str(tmp_path / "exact"), SplitOptions(ratios=(0.6, 0.2, 0.2), seed=1, group_near=False))
    assert any(len(splits) > 1 for splits in _families(tmp_path / "exact").values())


def _families(folder) -> dict:
    where: dict = {}
    for name in ("train", "val", "test"):
        for r in _read(folder / f"{name}.jsonl"):
            where.setdefault(r["family"], set()).add(name)
    return where


def test_exact_sizes_and_stratified_shares(tmp_path):
    rng = random.Random(1)
    rows = [{"text": _sentence(rng), "label": lab} for lab in ("a", "b", "c", "d") for _ in range(25)]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    s = split_data(str(src), str(tmp_path / "out"), SplitOptions(ratios=(0.8, 0.1, 0.1), stratify="label"))
    assert (s.counts["train rows"], s.counts["val rows"], s.counts["test rows"]) == (80, 10, 10)
    for name in ("val", "test"):
        labels = [r["label"] for r in _read(tmp_path / "out" / f"{name}.jsonl")]
        assert all(labels.count(lab) in (2, 3) for lab in "abcd"), labels
    assert s.counts["strata"] == 4


def test_seeded(tmp_path):
    rng = random.Random(2)
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": _sentence(rng)} for _ in range(50)])
    files = {}
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        split_data(str(src), str(tmp_path / run), SplitOptions(seed=seed))
        files[run] = (tmp_path / run / "test.jsonl").read_text()
    assert files["a"] == files["b"] != files["c"]


def test_quotas_largest_remainder():
    import numpy as np

    q = quotas(np.array([5, 5, 5]), 0.1)  # 1.5 rows in all → 2, given to the largest remainders
    assert q.sum() == 2 and set(q.tolist()) <= {0, 1}


def test_bad_ratios(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    with pytest.raises(UserError, match="ratios"):
        split_data(str(src), str(tmp_path / "out"), SplitOptions(ratios=(0.8, 0.3, 0.1)))
