"""The planner against danlu's own CPU reading (bench/plan_calibrate.py, the committed JSON): what
the planner predicts today for a measured configuration must stay within 15% of the peak RSS
that configuration reached in a real `danlu train`, so a change that drifts the memory model away
from what training really uses fails here. Predictions use the precision the run recorded (bf16
autocast there), whatever this machine's CPU would pick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
READING = ROOT / "bench" / "results" / "plan-2026-12-02-cpu.json"


def measured_rows() -> list[dict]:
    return [r for r in json.loads(READING.read_text(encoding="utf-8"))["rows"] if "peak_rss_bytes" in r.get("measured", {})]


def predicted_peak(row: dict) -> int:
    from danlu.config.load import load_config_dict
    from danlu.plan.estimate import estimate_memory
    from danlu.plan.spec import spec_from_config

    spec = spec_from_config(load_config_dict(row["run_config"]), device="cpu", precision=row["measured"]["precision"])
    spec.dataset_tokens = row["predicted"]["dataset_tokens"]
    return estimate_memory(spec).peak_bytes


def test_small_lora_b8_l512_within_15_percent_of_its_reading():
    row = next(r for r in measured_rows() if r["config"] == "builtin:small lora b8 L512")
    measured = row["measured"]
    assert measured["release_memory"] is True and measured["precision"] == "bf16"  # what the model describes
    assert predicted_peak(row) == pytest.approx(measured["peak_rss_bytes"], rel=0.15)


def test_issue_10_grid_within_15_percent():
    """Issue 10's CPU target: builtin tiny/mini/small × full/LoRA/QLoRA/prefix/IA3 × two lengths."""
    grid = [r for r in measured_rows() if not r.get("validation")]
    assert len(grid) == 30
    ratios = {r["config"]: predicted_peak(r) / r["measured"]["peak_rss_bytes"] for r in grid}
    assert {k: round(v, 3) for k, v in ratios.items() if abs(v - 1) > 0.15} == {}


REAL_READING = ROOT / "bench" / "results" / "plan-2026-12-06-cpu-real.json"


def real_ratios(model: str) -> dict[str, float]:
    rows = [r for r in json.loads(REAL_READING.read_text(encoding="utf-8"))["rows"]
            if r["model"] == model and "peak_rss_bytes" in r.get("measured", {})]
    assert rows, model
    return {r["config"]: predicted_peak(r) / r["measured"]["peak_rss_bytes"] for r in rows}


def test_smollm2_within_15_percent_of_its_reading():
    """Issue 18: SmolLM2-135M (llama, tied 49k vocabulary), planned from the bundled shape
    table exactly as the run was, against the peak RSS of real `danlu train` runs."""
    ratios = real_ratios("smollm2-135m")
    assert len(ratios) >= 3
    assert {k: round(v, 3) for k, v in ratios.items() if abs(v - 1) > 0.15} == {}


@pytest.mark.xfail(strict=True, reason="gemma-3-270m LoRA reads 0.75: the step's tensors are right (live growth "
                   "709 vs 701 MiB) but the process is ~250 MiB larger with its 262k-vocabulary tokenizer and glibc "
                   "keeps ~530 MiB (not 0.41 x activations) around the fused loss's 128 x 262k chunks; "
                   "docs/notes/issue-18c.md")
def test_gemma3_within_15_percent_of_its_reading():
    ratios = real_ratios("gemma3-270m")
    assert {k: round(v, 3) for k, v in ratios.items() if abs(v - 1) > 0.15} == {}
