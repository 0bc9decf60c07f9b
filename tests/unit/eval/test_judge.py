"""The LLM judge against a fake OpenAI-compatible endpoint on 127.0.0.1: every item is asked
in both orders (base first, tuned first), a fair judge makes the tuned model win, a judge with
pure position bias cancels out to ties, single-answer scores, prose replies, and errors."""

from __future__ import annotations

import pytest

from danlu.errors import ConfigError, DanluError
from danlu.eval.generate import EvalItem
from danlu.eval.judge import Judge, JudgeConfig, combine, judge_config_from, parse_score, parse_winner
from tests.unit.eval.fake_openai import _section, fake_judge

ITEMS = [EvalItem([{"role": "user", "content": q}], a, {"role": "assistant", "content": a})
         for q, a in [("What is FlowDesk?", "A help-desk product."), ("如何导出数据？", "在设置里选择导出。"),
                      ("Free trial?", "Yes, 14 days.")]]
TUNED = ["A help-desk product.", "在设置里选择导出。", "No."]
BASE = ["A bicycle.", "不知道。", "Yes, 14 days."]


@pytest.fixture(scope="module")
def judge_server():
    with fake_judge() as server:
        yield server


def judge(url: str, model: str, **kw) -> Judge:
    return Judge(JudgeConfig(base_url=url, model=model, rubric="Correct answers win.", **kw))


def test_pairwise_asks_both_orders_and_the_fair_judge_prefers_the_tuned_model(judge_server):
    url, requests = judge_server
    requests.clear()
    summary, records = judge(url, "fair", concurrency=2).pairwise(ITEMS, BASE, TUNED)
    assert len(requests) == 2 * len(ITEMS)
    shown = {(_section(r["messages"][1]["content"], "Answer A"), _section(r["messages"][1]["content"], "Answer B"))
             for r in requests}
    for base, tuned in zip(BASE, TUNED):  # each pair was shown in both orders
        assert (base, tuned) in shown and (tuned, base) in shown
    assert "Correct answers win." in requests[0]["messages"][0]["content"]  # the rubric reaches the judge
    assert [r["winner"] for r in records] == ["tuned", "tuned", "base"]
    assert all(r["consistent"] for r in records)
    assert summary["wins"] == 2 and summary["losses"] == 1 and summary["ties"] == 0
    assert summary["judge_win_rate"] == pytest.approx(200 / 3)
    assert summary["consistency"] == 100.0
    assert summary["first_position_rate"] == pytest.approx(50.0)


def test_position_bias_cancels_out(judge_server):
    url, _ = judge_server
    summary, records = judge(url, "first").pairwise(ITEMS, BASE, TUNED)
    assert all(r["winner"] == "tie" and not r["consistent"] for r in records)
    assert summary["judge_win_rate"] == 50.0
    assert summary["consistency"] == 0.0 and summary["first_position_rate"] == 100.0


def test_prose_replies_are_understood(judge_server):
    url, _ = judge_server
    summary, _ = judge(url, "prose").pairwise(ITEMS, BASE, TUNED)
    assert (summary["wins"], summary["losses"], summary["unparsed"]) == (2, 1, 0)


def test_single_answer_scores(judge_server):
    url, _ = judge_server
    summary, records = judge(url, "fair").single(ITEMS, TUNED)
    assert [r["judge_score"] for r in records] == [9.0, 9.0, 2.0]
    assert summary["judge_score"] == pytest.approx(20 / 3)


@pytest.mark.parametrize("text,winner", [
    ('{"winner": "B", "reason": "x"}', "B"), ('Sure! {"winner": "tie"}', "tie"), ("Winner: A", "A"),
    ("The winner is a tie.", "tie"), ("Answer B is better.", "B"), ("B", "B"), ("I cannot decide", None),
    ('{"winner": "C"}', None),
])
def test_parse_winner(text, winner):
    assert parse_winner(text) == winner


@pytest.mark.parametrize("text,score", [('{"score": 7}', 7.0), ("Score: 8/10", 8.0), ('{"score": 11}', None),
                                        ("great", None)])
def test_parse_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("base_first,tuned_first,winner,score", [
    ("B", "A", "tuned", 1.0),  # tuned chosen in both orders
    ("A", "B", "base", -1.0),
    ("A", "A", "tie", 0.0),  # always the first position: bias, no preference
    ("B", "tie", "tuned", 0.5),
    (None, "A", "tuned", 0.5),  # an unparsed reply counts as a tie
])
def test_combine_both_orders(base_first, tuned_first, winner, score):
    r = combine(base_first, tuned_first)
    assert (r["winner"], r["score"]) == (winner, score)


def test_unreachable_judge_says_where():
    j = judge("http://127.0.0.1:9/v1", "fair", max_retries=0, timeout_s=5)
    with pytest.raises(DanluError, match="cannot reach the judge at http://127.0.0.1:9/v1"):
        j.pairwise(ITEMS[:1], BASE[:1], TUNED[:1])


def test_judge_config_from_a_run_config(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("eval:\n  judge:\n    base_url: http://x/v1\n    model: m\n    rubric: be strict\n", encoding="utf-8")
    j = judge_config_from(str(cfg), {"model": "other", "base_url": None})
    assert (j.base_url, j.model, j.rubric) == ("http://x/v1", "other", "be strict")
    assert judge_config_from(None, {}) is None
    with pytest.raises(ConfigError, match="base_url and model"):
        judge_config_from(None, {"model": "m"})
