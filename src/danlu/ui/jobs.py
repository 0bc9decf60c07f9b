"""Everything heavy the UI starts is a `python -m danlu ...` subprocess in the workspace folder:
training, evaluation, export, the API server, the data workbench. The UI never trains in its
own process; it writes the YAML, starts `danlu train` on it exactly as a person would at the
shell, and reads progress back from the run directory. A crash in a job is a line in its log
and an exit code on the Runs page, never a crash of the UI.

Each job's output (stdout and stderr together) goes to a log file; a watcher thread records
the exit code so the UI can tell finished, stopped and failed apart."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import danlu
from danlu.errors import UserError

log = logging.getLogger(__name__)
SRC = str(Path(danlu.__file__).resolve().parent.parent)  # the danlu the UI runs is the danlu its jobs run


def danlu_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "danlu", *args]


def job_env(extra: dict | None = None) -> dict:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # the log shows lines as they are written
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("DANLU_PROGRESS", "1")  # bars in the job log (tail() keeps each bar's last redraw)
    return env


@dataclass
class Job:
    key: str
    kind: str
    argv: list[str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)
    meta_path: Path | None = None
    returncode: int | None = None
    stop_requested: bool = False

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> str:
        if self.running:
            return "running"
        return "stopped" if self.stop_requested else ("done" if self.proc.returncode == 0 else "failed")


class Jobs:
    """The subprocesses this UI started, by key (a run directory, 'serve', 'eval:RUN' ...)."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, key: str, kind: str, argv: list[str], *, cwd: Path, log_path: Path, append: bool = False,
              meta_path: Path | None = None, meta: dict | None = None, env: dict | None = None) -> Job:
        with self._lock:
            old = self._jobs.get(key)
            if old is not None and old.running:
                raise UserError(f"{key} is already running (pid {old.proc.pid})", hint="stop it first")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a" if append else "w", encoding="utf-8") as fh:
                fh.write(f"$ {' '.join(argv[1:]) if argv[0] == sys.executable else ' '.join(argv)}\n")
                fh.flush()
                proc = subprocess.Popen(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=job_env(env), start_new_session=True)
            job = Job(key, kind, argv, Path(cwd), log_path, proc, meta_path=meta_path)
            self._jobs[key] = job
        if meta_path is not None:
            _write_meta(meta_path, {**(meta or {}), "kind": kind, "argv": argv, "cwd": str(cwd), "pid": proc.pid,
                                    "started": job.started, "returncode": None})
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"danlu-ui-{kind}").start()
        log.info("started %s job %s: pid %d", kind, key, proc.pid)
        return job

    def _watch(self, job: Job) -> None:
        code = job.proc.wait()
        job.returncode = code
        if job.meta_path is not None:
            meta = _read_meta(job.meta_path)
            meta.update(returncode=code, ended=time.time(), stop_requested=job.stop_requested)
            _write_meta(job.meta_path, meta)
        log.info("%s job %s ended with exit code %d", job.kind, job.key, code)

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def running(self, key: str) -> bool:
        job = self._jobs.get(key)
        return bool(job and job.running)

    def stop(self, key: str, *, force: bool = False) -> str:
        """SIGTERM (training saves a checkpoint and exits cleanly); a second stop kills the group."""
        job = self._jobs.get(key)
        if job is None or not job.running:
            return "not running"
        force = force or job.stop_requested
        job.stop_requested = True
        try:
            if force:
                os.killpg(job.proc.pid, signal.SIGKILL)
            else:
                job.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return "not running"
        return "killed" if force else "stopping"

    def wait(self, key: str, timeout: float | None = None) -> int | None:
        job = self._jobs.get(key)
        if job is None:
            return None
        try:
            code = job.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        deadline = time.time() + 5
        while job.returncode is None and time.time() < deadline:  # the watcher writes the meta file
            time.sleep(0.02)
        return code

    def stop_all(self) -> None:
        for key, job in list(self._jobs.items()):
            if job.running:
                self.stop(key)


def _write_meta(path: Path, meta: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    try:  # a reused pid is someone else's process
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return b"danlu" in cmd
    except OSError:
        return True


def tail(path: Path, max_bytes: int = 20_000) -> str:
    """The end of a log file, with progress-bar redraws (carriage returns) collapsed."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            raw = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [_last_redraw(line) for line in raw.split("\n")]
    return "\n".join(lines[1:] if size > max_bytes else lines)


def _last_redraw(line: str) -> str:
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1] if parts else ""


def run_cli(cwd: Path, *args: str, timeout: float = 600) -> tuple[int, str, str]:
    """`danlu ARGS` to completion in `cwd`: (exit code, stdout, stderr). For short commands whose
    answer the page waits for (data clean, export --json ...)."""
    try:
        proc = subprocess.run(danlu_argv(*args), cwd=cwd, env=job_env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"danlu {' '.join(args)} took longer than {timeout:.0f} s"
    return proc.returncode, proc.stdout, proc.stderr


def cli_error(stderr: str) -> str:
    """The person-facing line of a failed command (its last `error:` line, else its last line)."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "danlu:"))]
    return (errors or lines or ["(no output)"])[-1]
