"""Liger kernels on CUDA: the same run with and without them logs the same losses.

Each side runs in its own `danlu train` process: Liger swaps module-level functions of the
transformers model code (RoPE) when it is applied, so a reference computed in the same process
afterwards would not be a reference. Tolerance: both runs are bf16 autocast; Liger's RMSNorm
(fp32 inside, "llama" casting), RoPE and SwiGLU kernels round differently from PyTorch's ops by
~2^-8 relative per op, which moves a loss of ~9 (ln 8192) by far less than 1% over a few steps
at this learning rate; a wrong kernel (no norm, positions dropped) moves it by tens of %."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, tiny_config

pytestmark = pytest.mark.gpu


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:tiny-llama"])
def test_loss_with_liger_equals_without(tmp_path, qa_file, model):
    pytest.importorskip("liger_kernel")
    runs = {}
    for liger in (False, True):
        out = tmp_path / f"liger-{liger}"
        cfg = tiny_config(out, qa_file, model={"name_or_path": model},
                          train={"max_steps": 6, "save_steps": None, "lr_scheduler": "constant", "warmup_steps": 0})
        proc = run_cli("train", str(cfg), f"train.liger_kernel={str(liger).lower()}")
        assert proc.returncode == 0, proc.stderr
        runs[liger] = out / "run"
    info = json.loads((runs[True] / "run_info.json").read_text())
    assert info["levers"]["liger_kernel"] == ["rope", "rms_norm", "swiglu"]
    assert info["levers"]["liger_modules"] >= 2 * 3  # 2 layers × (2 norms + MLP) at least
    base, fast = _losses(runs[False]), _losses(runs[True])
    assert len(base) == len(fast) == 6
    for a, b in zip(base, fast):
        assert abs(a - b) <= 1e-2 * abs(a), (base, fast)
