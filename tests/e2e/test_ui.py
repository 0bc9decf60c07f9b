"""`danlu ui` end to end without a browser: a run launched from the form is the same run as its
YAML through the CLI; the server starts on a free port and answers HTTP; binding off loopback
without --auth is refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli

QUICKSTART = ROOT / "examples" / "data" / "support_qa.jsonl"


def _yaml(ws: Path, output_dir: str) -> dict:
    return {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "data/support_qa.jsonl", "packing": False},
            "method": {"name": "lora", "r": 4}, "train": {"max_steps": 3, "batch_size": 4, "learning_rate": 5e-3,
                                                         "logging_steps": 1, "max_length": 128, "report_to": []},
            "output_dir": output_dir}


def _resolved(run_dir: Path) -> dict:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    cfg.pop("output_dir")
    return cfg


@pytest.mark.slow
def test_a_run_from_the_form_is_the_same_run_as_its_yaml(tmp_path):
    from danlu.ui import form
    from danlu.ui.jobs import Jobs
    from danlu.ui.launch import launch_training, read_metrics, run_status
    from danlu.ui.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (ws.dir("data") / "support_qa.jsonl").write_bytes(QUICKSTART.read_bytes())
    specs = form.form_specs()
    values, method, stage = form.config_to_values(specs, _yaml(ws.root, "runs/ui"))
    jobs = Jobs()
    launched = launch_training(ws, jobs, form.values_to_config(specs, values, method, stage))
    assert launched.run_dir == "runs/ui" and launched.argv[-2:] == ["train", "configs/ui.yaml"]
    (ws.root / "cli.yaml").write_text(yaml.safe_dump(_yaml(ws.root, "runs/cli")), encoding="utf-8")
    proc = run_cli("train", "cli.yaml", cwd=ws.root, timeout=240)  # runs while the UI's job trains
    assert proc.returncode == 0, proc.stderr
    assert jobs.wait("runs/ui", timeout=240) == 0, (ws.root / "runs/ui/train.log").read_text()
    assert run_status(ws, jobs, "runs/ui") == "finished"
    assert [r["step"] for r in read_metrics(ws.root / "runs/ui") if "loss" in r] == [1, 2, 3]
    assert _resolved(ws.root / "runs/ui") == _resolved(ws.root / "runs/cli")
    with pytest.raises(Exception, match="already holds a run"):
        launch_training(ws, jobs, form.values_to_config(specs, values, method, stage))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(workspace: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.Popen([sys.executable, "-m", "danlu", "ui", "--port", str(port), "--workspace", str(workspace),
                             *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"danlu ui exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {timeout} s")


def test_server_starts_on_a_free_port_and_answers(tmp_path):
    port = _free_port()
    proc = start_ui(tmp_path / "ws", port)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", proc)
        assert "danlu" in page
        config = wait_http(f"http://127.0.0.1:{port}/config", proc)
        assert "Export & serve" in config and "导出与部署" not in config  # labels are set on the server
        assert (tmp_path / "ws").is_dir()
    finally:
        proc.terminate()
        proc.wait(30)


def test_binding_elsewhere_without_auth_exits_2(tmp_path, capsys):
    from danlu.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["ui", "--host", "0.0.0.0", "--workspace", str(tmp_path / "ws")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--auth" in err and "Traceback" not in err
    assert not (tmp_path / "ws").exists()  # refused before anything was created


def test_the_train_pages_estimate_is_danlu_plan_on_the_form(tmp_path):
    """The Train page's memory / time / cost: the real `danlu plan --json` on the form's YAML, and
    it follows the form (a larger batch predicts more memory; max_length alone does not move it on
    this data since the planner sizes batches from the rows, all shorter than 128 tokens)."""
    from danlu.ui import form
    from danlu.ui.pages.train_actions import estimate_text, plan_json
    from danlu.ui.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (ws.dir("data") / "support_qa.jsonl").write_bytes(QUICKSTART.read_bytes())
    specs = form.form_specs()
    peaks = []
    for batch in (1, 8):
        data = _yaml(ws.root, "runs/p")
        data["train"]["batch_size"] = batch
        values, method, stage = form.config_to_values(specs, data)
        out = plan_json(ws, specs, values, method, stage)
        assert out["peak_bytes"] > 0 and out["time"]["tokens_per_s"] > 0 and out["time"]["hours"] is not None
        peaks.append(out["peak_bytes"])
    assert peaks[1] > peaks[0]
    verdict = estimate_text(ws, specs, values, method, stage, "t4", "en")  # a named GPU: fits or not, in words
    assert verdict.startswith("**✅ fits** on NVIDIA T4") and "danlu plan --json" in verdict
