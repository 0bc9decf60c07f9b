"""Measurements shared by both sides of a benchmark: per-step timing and loss-token counts,
peak memory of a process tree, useful FLOPs per token (the peak MFU divides by: peak.py)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

WARMUP_STEPS = 3  # steps left out of the steady-state median (allocator and cache warm-up)


class PeakRSS:
    """Peak resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], *, env=None, cwd=None, log: Path | None = None) -> tuple[int, int, float]:
    """(return code, peak RSS bytes of the process tree, wall seconds)."""
    t0 = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        with PeakRSS(proc.pid) as rss:
            code = proc.wait()
    finally:
        if log:
            out.close()
    return code, rss.peak, time.perf_counter() - t0


def steady_tokens_per_s(steps: list[dict]) -> float | None:
    """Median of per-step loss tokens / step seconds, leaving out the warm-up steps."""
    rates = [s["tokens"] / s["seconds"] for s in steps[WARMUP_STEPS:] if s["seconds"] > 0]
    return statistics.median(rates) if rates else None


def useful_flops_per_token(n_base: int, n_trainable: int, full: bool) -> float:
    """BENCHMARKS.md: full fine-tuning 6N; LoRA about 4N + 6N_adapter (frozen base: no weight grads)."""
    return 6.0 * n_base if full else 4.0 * n_base + 6.0 * n_trainable


def write_steps(path: Path, steps: list[dict], extra: dict) -> None:
    path.write_text(json.dumps({"steps": steps, **extra}), encoding="utf-8")


def python() -> str:
    return sys.executable
