"""The GPU levers through the real CLI on a CPU: refusals exit 2 with the config key, and a run
records the attention, packing, Liger and offload it used."""

from __future__ import annotations

import json

from tests.conftest import run_cli, tiny_config


def test_liger_true_without_cuda_exits_2_naming_the_key(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file)
    proc = run_cli("train", str(cfg), "train.liger_kernel=true", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert "train.liger_kernel" in proc.stderr and "CUDA" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_info_records_the_levers(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 2, "save_steps": None})
    proc = run_cli("train", str(cfg), "train.offload_activations=true")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["levers"] == {"attn_implementation": "danlu_varlen_sdpa",  # packed CPU run: per-sample SDPA
                              "packing": "varlen (one padding-free row, no mask)",
                              "liger_kernel": False, "gradient_checkpointing": False,
                              "offload_activations": "no-op on CPU"}
