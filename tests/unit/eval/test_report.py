"""report.html parses, holds every metric (English and Chinese labels), embeds its plots as
base64 PNG (nothing fetched), shows train and eval loss curves from metrics.jsonl, and lists the
biggest wins and losses side by side."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from danlu.eval.generate import EvalItem
from danlu.eval.metrics import MetricInputs, choose, compute
from danlu.eval.report import read_curves, wins_and_losses, write_report
from danlu.eval.run import EvalOptions, ModelEval, build_samples, build_summary

QA = [("What is FlowDesk?", "A help-desk product for small teams."),
      ("流云工单是什么？", "一款面向小团队的工单系统。"),
      ("Is there a free trial?", "Yes, 14 days, no card needed."),
      ("如何导出数据？", "在设置里选择导出，支持 CSV 和 JSON。")]
TUNED = ["A help-desk product for small teams.", "一款面向小团队的工单系统。", "No.", "在设置里选择导出。"]
BASE = ["A bicycle.", "不知道。", "Yes, 14 days, no card needed.", "导出。"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.imgs, self.links, self.scripts, self.tables = [], [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.imgs += [a["src"]] if tag == "img" else []
        self.links += [a[k] for k in ("href", "src") if k in a and tag in ("link", "a", "script")]
        self.scripts += tag == "script"
        self.tables += tag == "table"

    def handle_data(self, data):
        self.text.append(data)


def _model(answers, items, names, losses) -> ModelEval:
    m = ModelEval("x")
    m.answers = [{"text": a, "finish_reason": "stop", "completion_tokens": len(a)} for a in answers]
    m.scores = compute(names, answers, [it.reference for it in items], MetricInputs())
    m.figures = {n: s.value for n, s in m.scores.items()}
    m.figures.update(loss=losses[0], perplexity=losses[1], **{"bench:ceval": losses[2]})
    m.per_sample_loss = [losses[0]] * len(items)
    m.bench = {"ceval": {"layout": "ceval", "root": "b", "split": "val", "shots": 0, "style": "letter", "n": 2,
                         "accuracy": losses[2], "subjects": {"law": {"n": 2, "correct": 1, "accuracy": losses[2]}}}}
    return m


def make_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 3.0 / s} for s in range(1, 11)] + [{"step": s, "eval_loss": 1.0 + s / 10,
                                                                     "eval_exact_match": 10.0 * s} for s in (5, 10)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + [{"step": 10, "early_stop": {}}]))
    items = [EvalItem([{"role": "user", "content": q}], a, {"role": "assistant", "content": a}, where=f"qa.jsonl:{i + 1}")
             for i, (q, a) in enumerate(QA)]
    names = choose([it.reference for it in items], MetricInputs())
    model, base = _model(TUNED, items, names, (0.5, 1.65, 50.0)), _model(BASE, items, names, (2.0, 7.39, 25.0))
    model.run_dir = str(run)
    judge = {"mode": "pairwise", "judge_win_rate": 62.5, "wins": 2, "losses": 1, "ties": 1, "n": 4,
             "consistency": 75.0, "first_position_rate": 50.0, "unparsed": 0, "model": "judge-m",
             "base_url": "http://127.0.0.1:1/v1", "rubric": "correct wins"}
    model.figures["judge_win_rate"] = 62.5
    samples = build_samples(items, model, base, None)
    summary = build_summary(str(run), "builtin:tiny", EvalOptions(data=["qa.jsonl"]), items, names, model, base, judge)
    path = write_report(tmp_path / "report.html", summary, samples)
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return summary, samples, page


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    return (tmp, *make_report(tmp))


def test_report_parses_and_holds_every_metric(report):
    _, summary, _, page = report
    text = " ".join(page.text)
    assert set(summary["metrics"]["model"]) >= {"exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2",
                                                "rougeL", "loss", "perplexity", "judge_win_rate", "bench:ceval"}
    for name, label in summary["labels"].items():
        assert name in text and label["label"] in text and label["label_zh"] in text, name
    for figure in ("Metrics", "指标", "Training curves", "训练曲线", "Answer lengths", "回答长度分布",
                   "Biggest wins", "提升最大的样本", "Biggest losses", "退步最大的样本", "LLM judge", "大模型裁判",
                   "Benchmarks", "62.5", "Stopped early at step"):
        assert figure in text, figure
    assert summary["metrics"]["delta"]["exact_match"] == 50.0 - 25.0


def test_report_is_self_contained(report):
    _, _, _, page = report
    assert len(page.imgs) == 3  # loss curves, eval metric curves, answer lengths
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.scripts == 0 and not page.links


def test_wins_and_losses_side_by_side(report):
    _, summary, samples, page = report
    wins, losses = wins_and_losses(samples, summary["rank_by"])
    assert summary["rank_by"] == "token_f1"
    assert [w["prompt"] for w in wins] == ["流云工单是什么？", "What is FlowDesk?", "如何导出数据？"]  # biggest first
    assert [float(w["diff"]) for w in wins] == sorted((float(w["diff"]) for w in wins), reverse=True)
    assert [x["prompt"] for x in losses] == ["Is there a free trial?"]
    assert losses[0]["base"] == "Yes, 14 days, no card needed." and losses[0]["model"] == "No."
    text = " ".join(page.text)
    assert "A bicycle." in text and "Yes, 14 days, no card needed." in text


def test_loss_curves_read_train_and_eval_rows(report):
    tmp_path = report[0]
    curves = read_curves(str(tmp_path / "run"))
    assert len(curves["curves"]["loss"]) == 10 and curves["curves"]["eval_loss"] == [(5, 1.5), (10, 2.0)]
    assert curves["early_stop"] == [10]
    assert read_curves(str(tmp_path / "nowhere")) is None


def test_report_without_data_or_base(tmp_path):
    """A benchmark-only evaluation of a plain model: no answers, no base, no run."""
    m = ModelEval("builtin:tiny")
    m.bench = {"mmlu": {"layout": "mmlu", "root": "b", "split": "test", "shots": 1, "style": "letter", "n": 4,
                        "accuracy": 25.0, "subjects": {"x": {"n": 4, "correct": 1, "accuracy": 25.0}}}}
    m.figures = {"bench:mmlu": 25.0}
    summary = build_summary("builtin:tiny", None, EvalOptions(bench=["b"]), [], [], m, None, None)
    page = Page()
    page.feed(write_report(tmp_path / "r.html", summary, []).read_text(encoding="utf-8"))
    text = " ".join(page.text)
    assert "mmlu accuracy" in text and "25.00" in text and "No training run" in text and not page.imgs


def test_a_lower_loss_is_a_win(report):
    import copy

    samples = copy.deepcopy(report[2])
    for s, base_loss in zip(samples, (1.0, 3.0, 0.1, 2.0)):  # the model's per-sample loss is 0.5 throughout
        s["base_scores"]["loss"] = base_loss
    wins, losses = wins_and_losses(samples, "loss", higher_is_better=False)
    assert [w["base_score"] for w in wins] == ["3.00", "2.00", "1.00"] and wins[0]["diff"] == "-2.50"
    assert [x["base_score"] for x in losses] == ["0.10"]
