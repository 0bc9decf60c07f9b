"""bf16 autocast (what `precision: auto` picks on CPUs with AMX / AVX512-BF16 and on GPUs) follows
the fp32 loss curve: same model, data, seed and steps; every step's loss within 2 % of fp32's and
the final loss within 2 %. Runs on any CPU (bf16 autocast is emulated where not native)."""

from __future__ import annotations

import torch

from tests.parity.test_lora_parity import danlu_losses
from tests.unit.methods.harness import config

STEPS = 15


def _losses(tmp_path, precision: str) -> tuple[list[float], bool]:
    cfg = config(tmp_path / precision, {"name": "lora", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
                 model="builtin:mini", lr=5e-3, steps=STEPS, seed=7, precision=precision)
    cfg.data.packing = False
    from danlu.train.runner import build

    ctx, _, _ = build(cfg, run_dir=cfg.output_dir, is_main=False)
    ran_bf16 = ctx.precision == "bf16"
    losses, _ = danlu_losses(cfg)
    return losses, ran_bf16


def test_bf16_autocast_follows_the_fp32_loss_curve(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32, was_bf16 = _losses(tmp_path, "fp32")
        bf16, is_bf16 = _losses(tmp_path, "bf16")
    finally:
        torch.set_num_threads(threads)
    assert not was_bf16 and is_bf16
    assert len(fp32) == len(bf16) == STEPS
    assert fp32[-1] < fp32[0] * 0.8, fp32  # it learns
    assert bf16 != fp32  # the bf16 run really computed in bf16
    worst = max(abs(a - b) / a for a, b in zip(fp32, bf16))
    print(f"worst per-step relative loss difference bf16 vs fp32 over {STEPS} steps: {worst:.4%}")
    assert worst < 0.02, (fp32, bf16)
