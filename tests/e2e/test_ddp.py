"""Two CPU processes (gloo, torchrun) give the same final weights as one process with twice the
per-device batch; only rank 0 writes the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_cli, tiny_config


def test_two_processes_equal_one_with_double_batch(tmp_path, qa_file):
    common = {"max_steps": 3, "learning_rate": 1e-3, "precision": "fp32", "save_steps": 100, "warmup_steps": 0,
              "lr_scheduler": "constant"}
    one = tiny_config(tmp_path / "one", qa_file, method={"name": "full"}, train={**common, "batch_size": 8},
                      output_dir=str(tmp_path / "one" / "run"))
    two = tiny_config(tmp_path / "two", qa_file, method={"name": "full"}, train={**common, "batch_size": 4},
                      output_dir=str(tmp_path / "two" / "run"))
    res = run_cli("train", str(one))
    assert res.returncode == 0, res.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    res2 = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "danlu", "train", str(two)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res2.returncode == 0, res2.stderr[-4000:]
    a = load_file(str(tmp_path / "one" / "run" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "run" / "model" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-6, msg=name)
    rows = (tmp_path / "two" / "run" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in rows if '"loss"' in r]
    assert steps == sorted(set(steps)), "metrics written once (rank 0), not once per rank"
