"""examples/data/support_recall.jsonl, the quickstart's held-out fact-recall set: rephrased
questions (never a training question verbatim) whose reference answer is the training answer
that states the key facts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from danlu.eval.metrics import states_facts

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def rows(name):
    return [json.loads(x) for x in (DATA / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def test_recall_set_is_held_out_bilingual_and_its_references_state_their_facts():
    recall, train = rows("support_recall.jsonl"), rows("support_qa.jsonl")
    questions = {r["instruction"].strip() for r in train}
    zh = [r for r in recall if re.search(r"[\u4e00-\u9fff]", r["instruction"])]
    assert len(recall) >= 40 and len(zh) == len(recall) // 2
    for r in recall:
        assert r["instruction"].strip() not in questions, r["instruction"]
        assert r["output"] in {t["output"] for t in train}  # the training answer that holds the facts
        assert states_facts(r["output"], r["facts"]), r
