"""RELIABILITY cases 1, 2, 3, 4 and 14, SIGTERM, NaN: through the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.reliability.conftest import assert_same_weights, copy_run, losses, make_config, weights


def test_same_seed_twice_identical(reference, tmp_path):
    """Case 14: two deterministic runs give identical loss curves and weights."""
    res = run_cli("train", str(make_config(tmp_path)))
    assert res.returncode == 0, res.stderr[-2000:]
    assert losses(tmp_path / "run") == losses(reference)
    assert_same_weights(weights(tmp_path / "run"), weights(reference))


def test_sigkill_mid_epoch_then_resume_is_bit_exact(reference, tmp_path):
    """Case 1: SIGKILL mid-epoch (step 7 of 12, 6 steps per epoch), accumulation 2, dropout on."""
    cfg = make_config(tmp_path)
    killed = run_cli("train", str(cfg), env={"DANLU_FAULTS": "sigkill@step=7"})
    assert killed.returncode == -9
    res = run_cli("train", str(cfg), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stderr and "step-4" in res.stderr
    assert losses(tmp_path / "run") == losses(reference)  # every step, including 5..12 after the resume
    assert_same_weights(weights(tmp_path / "run"), weights(reference))


@pytest.mark.parametrize("phase", ["writing", "renamed"])
def test_kill_during_save_keeps_previous_and_cleans_partial(reference, tmp_path, phase):
    """Case 2: killed while checkpoint 8 is written (or renamed but not yet marked complete)."""
    cfg = make_config(tmp_path)
    killed = run_cli("train", str(cfg), env={"DANLU_FAULTS": f"sigkill@save=8:{phase}"})
    assert killed.returncode == -9
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "step-4" / "COMPLETE").exists()
    partial = ckpts / ("step-8" if phase == "renamed" else ".tmp-step-8")
    assert partial.exists() and not (partial / "COMPLETE").exists()
    res = run_cli("train", str(cfg), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "incomplete checkpoint" in res.stderr and "step-4" in res.stderr
    assert not (ckpts / ".tmp-step-8").exists()
    assert losses(tmp_path / "run") == losses(reference)
    assert_same_weights(weights(tmp_path / "run"), weights(reference))


def test_truncated_file_falls_back_with_warning(reference, killed_at_10, tmp_path):
    """Case 3: a truncated file in the latest checkpoint → the previous one, the file named."""
    cfg = copy_run(killed_at_10, tmp_path / "copy")
    victim = tmp_path / "copy" / "run" / "checkpoints" / "step-8" / "adapter_model.safetensors"
    victim.write_bytes(victim.read_bytes()[:100])
    res = run_cli("train", str(cfg), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert str(victim) in res.stderr and "truncated" in res.stderr
    assert "resuming from" in res.stderr and "step-4" in res.stderr
    assert_same_weights(weights(tmp_path / "copy" / "run"), weights(reference))


def test_disk_full_during_save(tmp_path):
    """Case 4: ENOSPC while saving → an error naming the path and the space; the last good
    checkpoint is intact and rotation deleted nothing; resume continues from it."""
    cfg = make_config(tmp_path, save_total_limit=1)
    res = run_cli("train", str(cfg), env={"DANLU_FAULTS": "enospc@save=8"})
    assert res.returncode == 2  # a full disk is the user's to fix: exit 2 with the message
    assert "disk full" in res.stderr and "step-8" in res.stderr and "MiB" in res.stderr
    assert "Traceback" not in res.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == ["step-4"] and (ckpts / "step-4" / "COMPLETE").exists()
    assert run_cli("train", str(cfg), "--resume").returncode == 0


def test_sigterm_saves_and_exits_cleanly_then_resumes(reference, tmp_path):
    cfg = make_config(tmp_path)
    res = run_cli("train", str(cfg), env={"DANLU_FAULTS": "sigterm@step=6"})
    assert res.returncode == 1
    assert "stopped by SIGTERM" in res.stderr and "--resume" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "run" / "checkpoints" / "step-6" / "COMPLETE").exists()  # saved where it stopped
    done = run_cli("train", str(cfg), "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(tmp_path / "run") == losses(reference)
    assert_same_weights(weights(tmp_path / "run"), weights(reference))


def test_nan_steps_are_skipped(tmp_path):
    cfg = make_config(tmp_path)
    res = run_cli("train", str(cfg), env={"DANLU_FAULTS": "nan@step=3-4"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("loss is NaN/inf; step skipped") == 2
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["skipped_steps"] == 2
    import torch

    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_too_many_nan_steps_stop_without_a_nan_checkpoint(tmp_path):
    cfg = make_config(tmp_path, max_bad_steps=3)
    res = run_cli("train", str(cfg), env={"DANLU_FAULTS": "nan@step=6-12"})
    assert res.returncode == 1
    assert "3 NaN/inf losses in a row" in res.stderr and "Traceback" not in res.stderr
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-4"]  # step 8 was never reached with good weights
