"""RELIABILITY case 13 (and the foundation issue): batch 8 × accumulation 1 trains like
batch 1 × accumulation 8 — the loss is normalised over the loss tokens of the whole step."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from danlu.config.load import load_config
from danlu.train.runner import run_training
from tests.conftest import tiny_config


def _weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.parametrize("packing", [True, False])
def test_batch8_equals_batch1_times_accum8(tmp_path, qa_file, packing):
    runs = {}
    for bs, ga in ((8, 1), (1, 8)):
        out = tmp_path / f"b{bs}g{ga}"
        cfg = tiny_config(out, qa_file, method={"name": "full"},
                          train={"max_steps": 3, "batch_size": bs, "grad_accum": ga, "learning_rate": 1e-3,
                                 "precision": "fp32", "save_steps": 100, "warmup_steps": 0,
                                 "lr_scheduler": "constant"},
                          data={"train": str(qa_file), "packing": packing}, output_dir=str(out / "run"))
        runs[(bs, ga)] = run_training(load_config(cfg)).run_dir
    a, b = _weights(runs[(8, 1)]), _weights(runs[(1, 8)])
    base = None
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-6, msg=name)
        base = name
    assert base is not None
