"""`danlu bench` end to end on builtin:tiny: both sides run in one command on the same text,
the seed recipe with TRL's defaults, danlu with its own; the result file holds tokens/s, peak
memory, final loss, MFU and the ratios, and the table prints."""

from __future__ import annotations

import json

from tests.conftest import QA, run_cli, tiny_config, write_jsonl


def _alpaca(tmp_path, times=4):
    return write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in QA] * times)


def test_bench_runs_both_sides_and_writes_the_ratios(tmp_path):
    data = _alpaca(tmp_path)
    cfg = tiny_config(tmp_path, data, train={"max_steps": 6, "batch_size": 4, "max_length": 64, "logging_steps": 1},
                      method={"name": "lora", "r": 8, "target_modules": "all-linear"})
    res = run_cli("bench", str(cfg), "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
                  "--seed-precision", "fp32")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    files = list((tmp_path / "results").glob("*.json"))
    assert len(files) == 1
    out = json.loads(files[0].read_text())
    assert out["seed_precision"] == "fp32" and out["rows"] == len(QA) * 4
    seed, ours = out["seed_recipe"], out["danlu"]
    assert seed["precision"] == "fp32" and seed["gradient_checkpointing"] is True  # TRL's default
    for side in (seed, ours):
        assert side["tokens_per_s"] > 0 and side["peak_memory_bytes"] > 50e6
        assert side["final_loss"] > 0 and 0 < side["mfu"] < 1
    assert out["ratios"]["tokens_per_s"] == round(ours["tokens_per_s"] / seed["tokens_per_s"], 4)
    assert "loss tokens / s" in res.stdout and "danlu / seed" in res.stdout
    assert "best of" in out["peak_flops"]["method"] and out["peak_flops"]["source"] in ("cache", "measured now")
    assert "MFU against a" in res.stdout and "%" in res.stdout  # 3 significant digits, not 0.0


def test_bench_refuses_a_method_it_cannot_compare(tmp_path):
    data = _alpaca(tmp_path, 1)
    cfg = tiny_config(tmp_path, data, method={"name": "full"})
    res = run_cli("bench", str(cfg), "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"))
    assert res.returncode == 2 and "method.name: lora" in res.stderr
    assert not (tmp_path / "results").exists()


def test_bench_refuses_data_with_no_usable_row(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [list(qa) for qa in QA])  # arrays, not rows of any format
    cfg = tiny_config(tmp_path, data, method={"name": "lora", "r": 8})
    res = run_cli("bench", str(cfg), "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"))
    assert res.returncode == 2 and "no usable rows" in res.stderr and "qa.jsonl" in res.stderr
