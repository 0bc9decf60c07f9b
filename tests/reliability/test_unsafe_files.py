"""RELIABILITY cases 5 and 6: pickle payloads planted in a checkpoint or artefact are refused
and never run; a model with custom code is refused without model.trust_remote_code."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from danlu.train.checkpoint import MARKER, manifest
from tests.conftest import run_cli
from tests.reliability.conftest import copy_run


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creating this file is the side effect


def plant(path, marker):
    torch.save({"state": Payload(str(marker))}, str(path))


def reseal(ckpt):
    """What a careful attacker does: rewrite the manifest so sizes and hashes match."""
    data = json.loads((ckpt / MARKER).read_text())
    data["files"] = manifest(ckpt)
    (ckpt / MARKER).write_text(json.dumps(data))


@pytest.mark.parametrize("victim", ["optimizer.pt", "rng_state.pth", "adapter_model.bin"])
def test_resealed_pickle_payload_is_refused(killed_at_10, tmp_path, victim):
    cfg = copy_run(killed_at_10, tmp_path / "copy")
    ckpt = tmp_path / "copy" / "run" / "checkpoints" / "step-8"
    marker = tmp_path / "PWNED"
    if victim == "adapter_model.bin":
        (ckpt / "adapter_model.safetensors").unlink()
    plant(ckpt / victim, marker)
    reseal(ckpt)
    res = run_cli("train", str(cfg), "--resume")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "refused" in res.stderr or "pickle" in res.stderr
    assert "Traceback" not in res.stderr
    assert not marker.exists(), "the payload ran"


def test_planted_payload_without_reseal_falls_back(killed_at_10, tmp_path):
    cfg = copy_run(killed_at_10, tmp_path / "copy")
    ckpt = tmp_path / "copy" / "run" / "checkpoints" / "step-8"
    marker = tmp_path / "PWNED"
    plant(ckpt / "optimizer.pt", marker)
    res = run_cli("train", str(cfg), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "optimizer.pt" in res.stderr and "step-4" in res.stderr
    assert not marker.exists()


def test_pickle_only_artefact_is_refused_by_chat(killed_at_10, tmp_path):
    art = tmp_path / "adapter"
    shutil.copytree(killed_at_10.parent / "run" / "checkpoints" / "step-8", art)
    (art / "danlu.json").write_text(json.dumps({"base_model": "builtin:tiny", "artefact": "adapter",
                                                "method": {"name": "lora", "r": 8}}))
    (art / "adapter_model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    plant(art / "adapter_model.bin", marker)
    res = run_cli("chat", str(art), "--prompt", "hi")
    assert res.returncode == 2 and "safetensors only" in res.stderr
    assert not marker.exists()


def test_custom_code_model_is_refused(tmp_path):
    """Case 6: a model directory whose config asks for its own Python code."""
    from danlu.models.builtin import builtin_path

    model = tmp_path / "evil-model"
    shutil.copytree(builtin_path("builtin:tiny"), model)
    marker = tmp_path / "PWNED"
    (model / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                            "from transformers import Qwen2ForCausalLM as EvilModel\n")
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(cfg))
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "q", "input": "", "output": "a"}\n')
    conf = tmp_path / "cfg.yaml"
    conf.write_text(f"model: {{name_or_path: {model}}}\ndata: {{train: {data}}}\nmethod: {{name: lora}}\n"
                    f"train: {{max_steps: 1, report_to: []}}\noutput_dir: {tmp_path / 'run'}\n")
    res = run_cli("train", str(conf))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "trust_remote_code" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists(), "the model's code ran"
