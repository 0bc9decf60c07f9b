"""The peak FLOP/s that MFU divides by, stable from run to run.

A CUDA GPU the planner's table knows (plan/hardware.py): the vendor's dense spec-sheet peak.
Anything else (a CPU, an unknown GPU): measured ONCE per machine — the best of `TRIALS` single
n×n matmuls per dtype after one warm-up, each timed alone (on a shared machine the best trial is
the one least disturbed, which is what a peak is) — and cached in $DANLU_HOME/peak/<key>.json,
keyed by the device model, its ISA flags, the thread count and the torch version.
`danlu bench --remeasure-peak` measures again and overwrites the cache.

Before this, `danlu bench` measured 5 matmuls once per run and the figure moved 4x between runs
on a busy machine (issue 24), so the same speed read 17.9% or 7.1% MFU."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import time
from pathlib import Path

log = logging.getLogger(__name__)

TRIALS = 10
SIZE = {"cpu": 2048, "cuda": 8192}
ISA_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2", "fma")


def peak_flops(remeasure: bool = False, measure=None) -> dict:
    """{"device", "fp32", "bf16"?, "method", "source", ...}: vendor peak or the cached measurement."""
    import torch

    if torch.cuda.is_available() and not remeasure:
        vendor = vendor_peak(torch.cuda.get_device_name(0))
        if vendor:
            return vendor
    key, desc = device_key()
    path = cache_path(key)
    if path.is_file() and not remeasure:
        try:
            return {**json.loads(path.read_text(encoding="utf-8")), "source": "cache", "cache_file": str(path)}
        except (OSError, ValueError):
            log.warning("unreadable peak cache %s: measuring again", path)
    load = _load()
    out = {**(measure or measure_peak)(), "device_model": desc, "key": key, "load_at_measure": load,
           "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return {**out, "source": "measured now", "cache_file": str(path)}


def _load() -> float | None:
    """1-minute load average per core: above 1 the measured peak is low and MFU reads high."""
    import os

    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
    except OSError:
        return None


def vendor_peak(device_name: str) -> dict | None:
    """The spec-sheet peak of a GPU the planner's table knows, else None."""
    from danlu.plan.hardware import _match_driver_name, gpu

    key = _match_driver_name(device_name)
    if key is None:
        return None
    dev = gpu(key)
    return {"device": "cuda", "fp32": dev.peak_flops("fp32"), "bf16": dev.peak_flops("bf16"),
            "method": f"vendor spec sheet, dense ({dev.label})", "source": "vendor", "device_model": device_name}


def measure_peak(n: int | None = None) -> dict:
    """Best of TRIALS single matmuls per dtype (fp32; bf16 where it is native)."""
    import torch

    from danlu.models.load import compute_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or SIZE[device]
    out = {"device": device, "fp32": _best_rate(torch.float32, device, n)}
    if compute_precision("auto") == "bf16":
        out["bf16"] = _best_rate(torch.bfloat16, device, n)
    out["method"] = f"measured: best of {TRIALS} single {n}x{n} matmuls per dtype after one warm-up"
    return out


def _best_rate(dtype, device: str, n: int) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(TRIALS):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def device_key() -> tuple[str, str]:
    """(short hash, description) of what sets the peak: device model, ISA flags, threads, torch."""
    import torch

    if torch.cuda.is_available():
        desc = f"cuda:{torch.cuda.get_device_name(0)}"
    else:
        desc = f"cpu:{cpu_model()}; flags {' '.join(cpu_flags())}; {torch.get_num_threads()} threads"
    desc += f"; torch {torch.__version__}"
    return hashlib.sha256(desc.encode()).hexdigest()[:16], desc


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    for line in _cpuinfo():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in ISA_FLAGS if f in have]
    return []


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def cache_path(key: str) -> Path:
    from danlu.paths import danlu_home

    return danlu_home() / "peak" / f"{key}.json"


def mfu_peak(peak: dict) -> tuple[float, str]:
    """(FLOP/s, dtype) MFU divides by: the higher of the fp32 and bf16 peaks."""
    return max((peak[k], k) for k in ("fp32", "bf16") if peak.get(k))
