"""`danlu eval` end to end: a tiny run that memorises six answers (evaluated during training as
well) is evaluated by the real CLI against its builtin base, with a benchmark and the judge on a
fake local endpoint; the tuned model wins on exact match, loss and the judge, and every output
file is there. Bad input exits 2 with what to do."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from tests.conftest import QA, run_cli, tiny_config, write_jsonl
from tests.unit.eval.fake_openai import fake_judge

ROWS = [QA[i] for i in (0, 1, 2, 3, 4, 5)]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny matrices: one thread is faster, and steadier on a shared machine


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """builtin:tiny, full fine-tune, lr 2e-3, 40 steps, the whole data set in each batch."""
    import torch

    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    tmp = tmp_path_factory.mktemp("eval_e2e")
    data = write_jsonl(tmp / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in ROWS])
    cfg = tiny_config(tmp, data, method={"name": "full"},
                      data={"train": str(data), "eval": str(data), "packing": False},
                      train={"max_steps": 40, "batch_size": len(ROWS), "learning_rate": 2e-3, "logging_steps": 5,
                             "save_steps": 1000},
                      eval={"strategy": "steps", "steps": 20, "metrics": ["exact_match"], "max_new_tokens": 24})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(load_config(str(cfg), []))
    finally:
        torch.set_num_threads(threads)
    return tmp / "run", data


def test_tuned_run_beats_its_base(trained):
    run, data = trained
    with fake_judge() as (url, requests):
        res = run_cli("eval", str(run), "--data", str(data), "--compare", "base", "--max-new-tokens", "32",
                      "--bench", "examples/bench/cmmlu", "--judge-url", url, "--judge-model", "fair", env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-3000:]
    out = run / "eval"
    assert "report:" in res.stdout and "Exact match" in res.stdout
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    model, base, delta = summary["metrics"]["model"], summary["metrics"]["base"], summary["metrics"]["delta"]
    assert summary["base"].startswith("builtin:tiny") and summary["n_samples"] == len(ROWS)
    assert model["exact_match"] >= 80.0 and base["exact_match"] == 0.0 and delta["exact_match"] > 0
    assert model["loss"] < base["loss"] and model["rougeL"] > base["rougeL"] and model["bleu"] > base["bleu"]
    assert summary["details"]["bleu"]["tokenize"] == "zh"
    assert model["judge_win_rate"] > 50.0 and summary["judge"]["wins"] >= 4
    assert len(requests) == 2 * len(ROWS)  # both orders for every question
    assert "bench:cmmlu" in model and "bench:cmmlu" in base

    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["reference"] for s in samples] == [a for _, a in ROWS]
    assert all({"prediction", "base_prediction", "scores", "base_scores", "judge"} <= set(s) for s in samples)
    assert (out / "bench_samples.jsonl").read_text(encoding="utf-8").count('"bench": "cmmlu"') == 2 * 5

    html = (out / "report.html").read_text(encoding="utf-8")
    HTMLParser().feed(html)
    for name in summary["labels"]:
        assert name in html, name
    assert html.count("data:image/png;base64,") == 3  # loss curves, eval exact match, lengths

    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]  # evaluation during training, on the same schedule
    assert [r["step"] for r in evals] == [20, 40] and all("eval_exact_match" in r for r in evals)


def test_bf16_evaluation_agrees_with_fp32(trained):
    """--dtype bf16 (the demo's, 4x faster on CPUs with native bf16): recorded in metrics.json,
    the loss within 2 % of the fp32 one."""
    run, data = trained
    loss = {}
    for dtype in ("fp32", "bf16"):
        out = run / f"eval-{dtype}"
        res = run_cli("eval", str(run), "--data", str(data), "--metrics", "exact_match", "--max-new-tokens", "16",
                      "--dtype", dtype, "--out", str(out), env=ONE_THREAD)
        assert res.returncode == 0, res.stderr[-3000:]
        report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        assert report["generation"]["dtype"] == dtype
        loss[dtype] = report["metrics"]["model"]["loss"]
    assert loss["bf16"] == pytest.approx(loss["fp32"], rel=0.02) and loss["bf16"] != loss["fp32"]


@pytest.mark.parametrize("args,message", [
    (["builtin:tiny"], "nothing to evaluate"),
    (["builtin:tiny", "--data", "examples/data/support_qa_eval.jsonl", "--dtype", "int8"], "--dtype must be auto"),
    (["builtin:tiny", "--data", "no/such/file.jsonl"], "data file not found: no/such/file.jsonl"),
    (["builtin:tiny", "--data", "examples/data/support_qa_eval.jsonl", "--metrics", "rougel"], "did you mean 'rougeL'"),
    (["builtin:tiny", "--data", "examples/data/support_qa_eval.jsonl", "--compare", "base"], "no recorded base model"),
])
def test_bad_input_exits_2(args, message):
    res = run_cli("eval", *args)
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr and "Traceback" not in res.stderr
