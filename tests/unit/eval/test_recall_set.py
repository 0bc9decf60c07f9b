"""examples/data/support_recall.jsonl, the quickstart's held-out fact-recall set: rephrased
questions (never a training question verbatim) whose reference answer is the training answer
that states the key facts."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

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


def test_paraphrases_restate_the_training_answers():
    """support_qa_paraphrases.jsonl asks each of the 200 training questions two more ways, same answer."""
    train, para = rows("support_qa.jsonl"), rows("support_qa_paraphrases.jsonl")
    assert [p["output"] for p in para] == [t["output"] for t in train for _ in range(2)]
    assert len({p["instruction"] for p in para} | {t["instruction"] for t in train}) == 600


def _grams(text: str) -> set[str]:
    """Character bigrams of a Chinese question; words and word bigrams of an English one."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if re.search(r"[\u4e00-\u9fff]", text):
        chars = re.sub(r"\W", "", text)
        return {chars[i : i + 2] for i in range(len(chars) - 1)}
    words = re.findall(r"\w+", text)
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def similarity(a: str, b: str) -> float:
    ga, gb = _grams(a), _grams(b)
    return len(ga & gb) / len(ga | gb)


# The 200 hand-written questions of the original training set came within 0.39 of a recall question at most
# ("What does the Business plan cost for each agent every month?" vs "What does the Business plan include?"):
# questions about the same topic share a few words. Any training question at or above 0.40 is treated as
# near-verbatim; e.g. "Team 版的价格是多少？" vs the recall "Team 套餐每人每月的价格是多少？" scores 0.47.
NEAR_VERBATIM = 0.40


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        ("Team 版的价格是多少？", "Team 套餐每人每月的价格是多少？", True),
        ("What is the API rate limit?", "How many API calls may one account make each minute?", False),
        ("How do I reset my password?", "How do I reset my password", True),
        ("怎么重置密码？", "重置密码的邮件链接多久会失效？", False),
    ],
)
def test_similarity_flags_near_verbatim_questions(a, b, near):
    assert (similarity(a, b) >= NEAR_VERBATIM) is near


def test_no_training_question_is_a_near_verbatim_recall_question():
    """The training data (and its paraphrases: each answer asked two more ways) may not come near a recall question."""
    recall, train = rows("support_recall.jsonl"), rows("support_qa.jsonl") + rows("support_qa_paraphrases.jsonl")
    assert len(train) == 600
    for r in recall:
        closest = max(train, key=lambda t: similarity(r["instruction"], t["instruction"]))
        assert similarity(r["instruction"], closest["instruction"]) < NEAR_VERBATIM, (r["instruction"], closest)
