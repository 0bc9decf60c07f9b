"""The real CLI on builtin:tiny, start to finish: full and LoRA train (loss falls), the run
directory follows the contract, the artefact reloads with identical logits, chat answers,
render shows what the trainer sees, and bad input exits 2 with file:line or the key."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import QA, run_cli, tiny_config, write_jsonl


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_train_end_to_end(tmp_path, qa_file, method):
    cfg = tiny_config(tmp_path, qa_file, method={"name": method} if method == "full" else {"name": "lora", "r": 8},
                      train={"max_steps": 12, "batch_size": 8, "learning_rate": 2e-2 if method == "lora" else 2e-3,
                             "report_to": ["tensorboard"]})
    res = run_cli("train", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    art = run / ("model" if method == "full" else "adapter")
    for name in ("config.yaml", "data_report.json", "metrics.jsonl", "run_info.json", "tensorboard"):
        assert (run / name).exists(), name
    assert (art / "danlu.json").exists() and list(art.glob("*.safetensors"))
    assert not list(art.glob("*.bin")), "no pickle in an artefact"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-12", "step-6", "step-9"]  # save_steps 3, save_total_limit 3
    assert all((p / "COMPLETE").exists() for p in (run / "checkpoints").iterdir())
    losses = _losses(run)
    assert losses[-1] < losses[0] * 0.9, losses
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = rows[0]
    for key in ("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"):
        assert key in first, key
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert isinstance(resolved["train"]["learning_rate"], float)
    info = json.loads((run / "run_info.json").read_text())
    assert 0 < info["trainable_params"] <= info["total_params"]
    if method == "lora":
        assert info["trainable_percent"] < 50
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"]["rows_read"] == len(QA) and report["train"]["kept"] == len(QA)
    gen = json.loads((art / "generation_config.json").read_text())
    assert 2 in (gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]])


def test_artefact_reloads_with_identical_logits(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 4})
    assert run_cli("train", str(cfg)).returncode == 0
    import torch

    from danlu.infer.load import load_for_inference

    a = load_for_inference(str(tmp_path / "run"), device="cpu")
    b = load_for_inference(str(tmp_path / "run" / "adapter"), device="cpu")
    ids = a.tokenizer("How much is the Team plan?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        la, lb = a.model(ids).logits, b.model(ids).logits
    assert torch.equal(la, lb)
    base = load_for_inference("builtin:tiny", device="cpu")
    with torch.no_grad():
        assert not torch.allclose(base.model(ids).logits, la), "the adapter changed nothing"
    res = run_cli("chat", str(tmp_path / "run"), "--prompt", "What is FlowDesk?", "--max-new-tokens", "8")
    assert res.returncode == 0 and res.stdout.strip(), res.stderr[-2000:]
    # interactive: two turns on stdin, then an empty line ends the session
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    chat = subprocess.run([sys.executable, "-m", "danlu", "chat", str(tmp_path / "run"), "--max-new-tokens", "6"],
                          input="What is FlowDesk?\n/reset\n流云工单是什么？\n\n", capture_output=True, text=True,
                          env=env, timeout=300)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.count("bot> ") == 2 and chat.stdout.count("you> ") == 4


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file)
    res = run_cli("train", str(cfg), "--dry-run", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    plan = json.loads(res.stdout)["plan"]
    assert plan["samples"] == len(QA) and plan["optimizer_steps"] == 6 and plan["trainable_params"] > 0
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_render_json_shows_labels(tmp_path, qa_file):
    res = run_cli("data", "render", str(qa_file), "--json", "--limit", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 2
    for item in lines:
        assert len(item["input_ids"]) == len(item["labels"])
        assert -100 in item["labels"] and any(x != -100 for x in item["labels"])
    text = run_cli("data", "render", str(qa_file), "--limit", "1")
    assert text.returncode == 0 and "trained" in text.stdout


def test_bad_config_exits_2_with_key(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file)
    res = run_cli("train", str(cfg), "train.learnin_rate=1")
    assert res.returncode == 2
    assert "train.learnin_rate" in res.stderr and "did you mean 'train.learning_rate'" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_data_policy_error_exits_2_with_file_line(tmp_path):
    rows = [{"instruction": "q", "input": "", "output": "a"}, '{"instruction": "broken"', {"instruction": "x"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = tiny_config(tmp_path, data, data={"train": str(data), "on_bad_row": "error"})
    res = run_cli("train", str(cfg))
    assert res.returncode == 2 and f"{data}:2" in res.stderr and "invalid JSON" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_rows_skipped_are_reported(tmp_path):
    good = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    rows = good + ['{"instruction": "broken"', {"instruction": "x"}, {"instruction": "y", "output": " "}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = tiny_config(tmp_path, data, train={"max_steps": 2})
    res = run_cli("train", str(cfg))
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["train"]
    assert report["rows_read"] == len(rows) and report["kept"] == len(QA) and report["dropped"] == 3
    by = report["dropped_by_reason"]
    assert by["invalid JSON"]["rows"][0]["where"] == f"{data}:{len(QA) + 1}"
    assert by["missing field"]["count"] == 1 and by["empty assistant turn"]["count"] == 1
    assert "dropped 1 × invalid JSON" in res.stderr


def test_existing_run_needs_resume_or_overwrite(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 2})
    assert run_cli("train", str(cfg)).returncode == 0
    again = run_cli("train", str(cfg))
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr
    assert run_cli("train", str(cfg), "--overwrite").returncode == 0


@pytest.mark.slow
def test_compiled_run_trains_like_the_eager_one(tmp_path, qa_file):
    """train.compile: the same loss curve (bf16 / kernel-order tolerance) and an adapter with the
    same tensors under the same names (no `_orig_mod.` prefix from the compiled wrapper)."""
    from safetensors.torch import load_file

    runs = {}
    for compiled in (False, True):
        out = tmp_path / ("compiled" if compiled else "eager")
        cfg = tiny_config(tmp_path, qa_file, method={"name": "lora", "r": 4},
                          train={"max_steps": 4, "logging_steps": 1, "compile": compiled, "save_steps": 100},
                          output_dir=str(out))
        res = run_cli("train", str(cfg))
        assert res.returncode == 0, res.stderr[-3000:]
        losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x
                  and "train_loss" not in x]
        runs[compiled] = (losses, load_file(str(out / "adapter" / "adapter_model.safetensors")))
    (eager, w_eager), (comp, w_comp) = runs[False], runs[True]
    assert len(eager) == len(comp) == 4
    assert all(abs(a - b) <= 2e-2 * abs(a) for a, b in zip(eager, comp)), (eager, comp)
    assert w_eager.keys() == w_comp.keys()
