"""A reference run shared by the reliability tests: builtin:tiny, LoRA with dropout, gradient
accumulation 2, deterministic, 12 steps over 2 epochs, a checkpoint every 4 steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli, write_jsonl

ROWS = [{"instruction": f"Question {i}: what is {i}+{i}?", "input": "", "output": f"It is {2 * i}. 答案是{2 * i}。"}
        for i in range(24)]


def make_config(root: Path, **train) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(root / "d.jsonl", ROWS)
    cfg = {
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"train": str(data)},
        "method": {"name": "lora", "r": 8, "dropout": 0.1},
        "train": {"max_steps": 12, "batch_size": 2, "grad_accum": 2, "learning_rate": 5e-3, "logging_steps": 1,
                  "save_steps": 4, "deterministic": True, "report_to": [], "max_length": 96, **train},
        "output_dir": str(root / "run"),
    }
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    res = run_cli("train", str(make_config(root)))
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="session")
def killed_at_10(tmp_path_factory):
    """A run killed by SIGKILL before step 10: checkpoints step-4 and step-8 complete."""
    root = tmp_path_factory.mktemp("killed")
    cfg = make_config(root)
    res = run_cli("train", str(cfg), env={"DANLU_FAULTS": "sigkill@step=10"})
    assert res.returncode == -9, res.stderr[-2000:]
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == ["step-4", "step-8"]
    return cfg


def copy_run(cfg: Path, dest: Path) -> Path:
    """A private copy of a run (config rewritten to point at the copy)."""
    shutil.copytree(cfg.parent, dest)
    new = dest / "cfg.yaml"
    data = yaml.safe_load(new.read_text())
    data["output_dir"] = str(dest / "run")
    data["data"]["train"] = str(dest / "d.jsonl")
    new.write_text(yaml.safe_dump(data, allow_unicode=True))
    return new
