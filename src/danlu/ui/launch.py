"""Start, stop and resume training runs, and read a run directory back: status, progress,
metrics and log. A run is started by writing its YAML to WORKSPACE/configs/ and running
`danlu train configs/NAME.yaml` in the workspace — the same file and the same command a
person would use, so a run from the UI and the same YAML from the CLI are the same run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from danlu.errors import UserError
from danlu.ui.confine import confine_config, refuse_outside
from danlu.ui.jobs import Jobs, danlu_argv, pid_alive, tail
from danlu.ui.workspace import Workspace, safe_filename

JOB_FILE, LOG_FILE = "ui_job.json", "train.log"


@dataclass
class Launched:
    run_dir: str  # workspace-relative
    config: str  # workspace-relative YAML that `danlu train` was given
    argv: list[str]


def launch_training(ws: Workspace, jobs: Jobs, data: dict, *, overwrite: bool = False) -> Launched:
    """Validate `data` as the CLI would, confine its paths, write it as YAML, start `danlu train`."""
    from danlu.config.load import load_config_dict

    cfg = load_config_dict(data, source="the form")
    confine_config(ws, data)
    run_dir = ws.resolve(cfg.output_dir)
    key = ws.relative(run_dir)
    if run_dir == ws.root:
        raise UserError("output_dir must be a folder inside the workspace, not the workspace itself",
                        where="output_dir")
    if jobs.running(key) or _foreign_running(run_dir):
        raise UserError(f"{key} is training right now", where="output_dir", hint="stop it, or pick another output_dir")
    if _holds_run(run_dir) and not overwrite:
        raise UserError(f"{key} already holds a run", where="output_dir",
                        hint="resume it from the Runs page, tick 'overwrite', or pick another output_dir")
    rel_config, args = planned_command(ws, data, overwrite=overwrite)
    ws.resolve(rel_config).parent.mkdir(parents=True, exist_ok=True)
    ws.resolve(rel_config).write_text(config_yaml(data), encoding="utf-8")
    argv = danlu_argv(*args)
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs.start(key, "train", argv, cwd=ws.root, log_path=run_dir / LOG_FILE, meta_path=run_dir / JOB_FILE,
               meta={"config": rel_config})
    return Launched(key, rel_config, argv)


def planned_command(ws: Workspace, data: dict, *, overwrite: bool = False) -> tuple[str, list[str]]:
    """(the YAML Start writes, workspace-relative; the `danlu` arguments it runs on it)."""
    run_dir = ws.resolve(str(data.get("output_dir") or "runs/danlu"))
    rel_config = f"configs/{safe_filename(run_dir.name)}.yaml"
    return rel_config, ["train", rel_config, *(["--overwrite"] if overwrite else [])]


def config_yaml(data: dict) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def resume_run(ws: Workspace, jobs: Jobs, run: str) -> Launched:
    """`danlu train CONFIG --resume` with the YAML the run was started from (or its config.yaml)."""
    run_dir = ws.resolve(run, must_exist=True)
    key = ws.relative(run_dir)
    if jobs.running(key) or _foreign_running(run_dir):
        raise UserError(f"{key} is training right now")
    meta = ws.read_json(run_dir / JOB_FILE)
    config = meta.get("config")
    if not config or not ws.resolve(config).is_file():
        config = ws.relative(run_dir / "config.yaml")
    if not ws.resolve(config).is_file():
        raise UserError(f"{key} has neither the YAML it was started from nor a config.yaml; cannot resume")
    refuse_outside(ws, ws.resolve(config))
    argv = danlu_argv("train", config, "--resume")
    jobs.start(key, "train", argv, cwd=ws.root, log_path=run_dir / LOG_FILE, append=True,
               meta_path=run_dir / JOB_FILE, meta={"config": config})
    return Launched(key, config, argv)


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in ("checkpoints", "adapter", "model", "metrics.jsonl"))


def _foreign_running(run_dir: Path) -> bool:
    """Started by an earlier UI process that is gone, while training goes on."""
    meta = _meta(run_dir)
    return meta.get("returncode") is None and pid_alive(meta.get("pid"))


def _meta(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_status(ws: Workspace, jobs: Jobs, run: str) -> str:
    """running | finished | stopped (resumable) | failed | new."""
    run_dir = ws.resolve(run)
    if jobs.running(ws.relative(run_dir)) or _foreign_running(run_dir):
        return "running"
    if any((run_dir / a / "danlu.json").is_file() for a in ("adapter", "model")):
        return "finished"
    if any(p.is_dir() and (p / "COMPLETE").exists() for p in (run_dir / "checkpoints").glob("step-*")):
        return "stopped"
    meta = _meta(run_dir)
    if meta.get("returncode") not in (None, 0):
        return "failed"
    return "new"


def read_metrics(run_dir: Path) -> list[dict]:
    rows = []
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return rows


def progress(run_dir: Path, rows: list[dict]) -> tuple[int, int | None]:
    """(last logged step, planned optimizer steps from run_info.json)."""
    info = {}
    try:
        info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    step = max((r.get("step", 0) for r in rows), default=0)
    return int(info.get("global_step") or step), info.get("optimizer_steps")


def run_log(run_dir: Path) -> str:
    return tail(run_dir / LOG_FILE)
