"""Fault injection for danlu's reliability tests, driven by one environment variable and inert
(one dict lookup) when it is unset:

    DANLU_FAULTS="sigkill@step=7"            SIGKILL just before optimizer step 7 runs
    DANLU_FAULTS="sigterm@step=5"            SIGTERM before step 5 (a clean stop is expected)
    DANLU_FAULTS="sigkill@save=8:renamed"    die while saving checkpoint 8, after the rename, before the marker
    DANLU_FAULTS="sigkill@save=8:writing"    die while checkpoint 8's files are being written
    DANLU_FAULTS="enospc@save=8"             the disk is full while saving checkpoint 8
    DANLU_FAULTS="nan@step=3-5"              the loss of steps 3..5 is NaN

Several faults are separated by ';'. DANLU_FAULTS_RANK=N injects them into process N only."""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    kind: str  # sigkill | sigterm | enospc | nan
    point: str  # step | save
    first: int
    last: int
    phase: str = ""


def _parse(text: str) -> list[Fault]:
    faults = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, where = item.partition("@")
        point, _, rest = where.partition("=")
        span, _, phase = rest.partition(":")
        lo, _, hi = span.partition("-")
        faults.append(Fault(kind, point, int(lo), int(hi or lo), phase))
    return faults


def _this_rank() -> bool:
    """DANLU_FAULTS_RANK=1 limits the faults to that process of a multi-process run."""
    only = os.environ.get("DANLU_FAULTS_RANK")
    return only is None or only == os.environ.get("RANK", "0")


_FAULTS = _parse(os.environ.get("DANLU_FAULTS", "")) if _this_rank() else []


def active() -> bool:
    return bool(_FAULTS)


def _match(point: str, step: int, phase: str = "") -> list[Fault]:
    return [f for f in _FAULTS if f.point == point and f.first <= step <= f.last and (not f.phase or f.phase == phase)]


def at_step(step: int) -> None:
    """Called before optimizer step `step` (1-based) runs."""
    for f in _match("step", step):
        if f.kind in ("sigkill", "sigterm"):
            os.kill(os.getpid(), signal.SIGKILL if f.kind == "sigkill" else signal.SIGTERM)


def at_save(step: int, phase: str) -> None:
    """Called at phases 'writing' and 'renamed' of saving checkpoint `step`."""
    for f in _match("save", step, phase):
        if f.kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if f.kind == "enospc" and phase == "writing":
            raise OSError(errno.ENOSPC, "No space left on device (injected)")


def nan_loss(step: int) -> bool:
    return any(f.kind == "nan" for f in _match("step", step))
