"""`danlu plan`, `danlu sweep` and the memory preflight of `danlu train`, through the real CLI.
Nothing is downloaded: hub models come from the bundled shape table."""

from __future__ import annotations

import json

from tests.conftest import run_cli, tiny_config

GiB = 1024**3


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_flags_only_7b_qlora_fits_a_4090_and_is_recommended():
    out = _json(run_cli("plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--method", "qlora", "--max-length", "2048",
                        "--batch-size", "4", "--gradient-checkpointing", "--gpu", "rtx4090", "--tokens", "20000000",
                        "--json"))
    assert out["device"]["kind"] == "cuda" and out["model"]["source"].startswith("bundled")
    assert 4 * GiB < out["peak_bytes"] < 16 * GiB  # the seeds: a 7B QLoRA at 2048 × 4 fits 16 GB (checkpointed)
    assert out["peak_bytes"] == out["memory"]["peak_bytes"] and out["fits"] is True
    assert out["time"]["hours"] > 0 and any(c["usd"] > 0 for c in out["time"]["costs"])
    settings = {s["setting"]: s["value"] for s in out["recommendation"]["settings"]}
    assert settings["method"] == "qlora"


def test_full_7b_fp32_does_not_fit_80gb_and_the_table_prints():
    text = run_cli("plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--method", "full", "--precision", "fp32",
                   "--gpu", "a100-80gb", "--no-recommend")
    assert text.returncode == 0, text.stderr
    assert "peak memory on" in text.stdout and "does not fit" in text.stdout and "optimizer" in text.stdout
    gpus = run_cli("plan", "--list-gpus")
    assert gpus.returncode == 0 and "h100" in gpus.stdout and "$" in gpus.stdout


def test_config_with_data_counts_tokens_on_this_cpu(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file)
    out = _json(run_cli("plan", str(cfg), "train.max_length=64", "--json"))
    assert out["device"]["kind"] == "cpu" and out["peak_measure"] == "process RSS"
    assert out["run"]["max_length"] == 64
    assert out["data"]["counted_with_tokenizer"] is True and out["data"]["samples"] == 8 and out["data"]["tokens"] > 8
    assert out["memory"]["peak_bytes"] > 0 and "recommendation" not in out


def test_bad_input_exits_2_with_a_message(tmp_path):
    proc = run_cli("plan", "--model", "nobody/not-a-model-7b", "--gpu", "h100")
    assert proc.returncode == 2 and "nobody/not-a-model-7b" in proc.stderr and "Traceback" not in proc.stderr


def test_train_strict_memory_stops_before_loading(tmp_path, qa_file):
    # micro-batch 4096 × 1M tokens: the planner predicts far more than this machine has
    cfg = tiny_config(tmp_path, qa_file, train={"batch_size": 4096, "max_length": 1_000_000, "max_steps": 1})
    strict = run_cli("train", str(cfg), "--strict-memory")
    assert strict.returncode == 2, strict.stderr
    assert "predicted peak memory" in strict.stderr and "danlu plan" in strict.stderr
    assert not (tmp_path / "run" / "data_report.json").exists()  # stopped before building anything
