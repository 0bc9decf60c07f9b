"""`danlu train --nproc 2`: one process killed mid-run stops the job (no hang) with a resume hint;
`--resume --nproc 2` then ends with the same weights as one uninterrupted process with twice the
per-device batch (DDP's gradient average = the larger batch's mean)."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli, tiny_config

COMMON = {"max_steps": 6, "learning_rate": 1e-3, "precision": "fp32", "save_steps": 2, "warmup_steps": 0,
          "lr_scheduler": "constant", "deterministic": True}


@pytest.mark.slow
def test_kill_one_rank_then_resume_with_two_processes(tmp_path, qa_file):
    one = tiny_config(tmp_path / "one", qa_file, method={"name": "full"}, train={**COMMON, "batch_size": 8})
    two = tiny_config(tmp_path / "two", qa_file, method={"name": "full"},
                      train={**COMMON, "batch_size": 4, "distributed": "ddp", "ddp_timeout": 60})
    res = run_cli("train", str(one))
    assert res.returncode == 0, res.stderr[-2000:]

    t0 = time.monotonic()
    killed = run_cli("train", str(two), "--nproc", "2", env={"DANLU_FAULTS": "sigkill@step=5", "DANLU_FAULTS_RANK": "1"},
                     timeout=300)
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "a training process failed" in killed.stderr and "--resume --nproc 2" in killed.stderr
    assert time.monotonic() - t0 < 240, "the surviving process must not wait out a long timeout"
    run = tmp_path / "two" / "run"
    assert (run / "checkpoints" / "step-4" / "COMPLETE").is_file()
    assert not (run / "model").exists()

    resumed = run_cli("train", str(two), "--nproc", "2", "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and resumed.stdout.count("done:") == 1  # rank 0 prints
    a = load_file(str(tmp_path / "one" / "run" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=5e-6, msg=name)
