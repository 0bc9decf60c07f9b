"""Measure what `danlu train` really uses on this CPU and compare it with `danlu plan`.

For every configuration (builtin model × method × length × batch), a fresh Python process runs
the real runner (`run_training`: data, model, method, Trainer, checkpoints) for a few steps
while a thread samples the process's RSS (psutil) and glibc's bytes in use (mallinfo2); the
peak RSS is `ru_maxrss`. The planner predicts the same configuration from its config alone.

    PYTHONPATH=src python bench/plan_calibrate.py                 # measure, write the table
    PYTHONPATH=src python bench/plan_calibrate.py --only small     # a subset (substring match)

Writes bench/results/plan-<date>-cpu.json: machine, versions, command, and per configuration
the measured peak RSS, live bytes, baseline, tokens/s, and the prediction with its terms.
The CPU constants of src/danlu/plan/calibration.yaml (process baseline, matmul rate, efficiency)
are set by hand from these readings (rss_before_model_bytes, matmul_fp32_gflops, tokens_per_s)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
METHODS = {
    "full": {"name": "full"},
    "lora": {"name": "lora", "r": 8},
    "qlora": {"name": "qlora", "r": 8},
    "prefix": {"name": "prefix", "num_virtual_tokens": 16},
    "ia3": {"name": "ia3"},
}
# (model, method, batch, length); the two lengths per model and method are the accuracy target
GRID = [(m, meth, b, n) for m in ("builtin:tiny", "builtin:mini", "builtin:small")
        for meth in METHODS for b, n in ((4, 128), (8, 512))]


def write_data(path: Path, rows: int = 48) -> Path:
    """Rows longer than any length measured: packed rows are exactly max_length tokens, every
    position carries a label (the planner's worst case is the measured case)."""
    rng = random.Random(0)
    words = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
             "but have an they you were her she there one all we their 工单 系统 数据 导出 设置 团队").split()
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            fh.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(1400))}, ensure_ascii=False) + "\n")
    return path


def config_for(model: str, method: str, batch: int, length: int, data: Path, out: Path, steps: int) -> dict:
    return {
        "model": {"name_or_path": model},
        "data": {"train": str(data), "format": "text"},
        "method": METHODS[method],
        "train": {"max_steps": steps, "batch_size": batch, "max_length": length, "learning_rate": 1e-3,
                  "logging_steps": 1, "save_steps": 10_000, "report_to": []},
        "eval": {"strategy": "no"},
        "output_dir": str(out),
    }


# ---- the measured process --------------------------------------------------------------------------
def child(cfg_json: str) -> None:
    """Runs in a fresh process: train, sample memory, print one JSON line."""
    import ctypes
    import resource
    import threading
    import time

    import psutil

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        libc = None
    proc, peak = psutil.Process(), {"live": 0, "rss": 0}

    def sample():
        while True:
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            if libc is not None:
                m = libc.mallinfo2()
                peak["live"] = max(peak["live"], m.uordblks + m.hblkhd)
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    from danlu.config.load import load_config_dict
    from danlu.train import runner

    before = {}
    original = runner.load_base

    def load_base(ctx):
        before["rss"] = proc.memory_info().rss
        return original(ctx)

    runner.load_base = load_base
    cfg = load_config_dict(json.loads(cfg_json))
    result = runner.run_training(cfg, overwrite=True)
    rows = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")][1:]  # the first step includes warm-up
    print("RESULT " + json.dumps({
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sampled_rss_bytes": peak["rss"], "live_bytes_peak": peak["live"],
        "rss_before_model_bytes": before.get("rss"), "tokens_per_s": statistics.median(speeds) if speeds else None,
        "steps": result.info.get("global_step"),
    }))


def measure(cfg: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True,
                          env=env, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:300] if (proc.stderr or proc.stdout) else "no output"}


def matmul_gflops() -> float:
    """fp32 matmul rate of this CPU with all threads (median of a few 2048² products)."""
    import time

    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 2048**3 / statistics.median(times) / 1e9


# ---- prediction ----------------------------------------------------------------------------------------
def predict(cfg: dict) -> dict:
    from danlu.config.load import load_config_dict
    from danlu.plan.estimate import estimate_memory
    from danlu.plan.spec import spec_from_config
    from danlu.plan.throughput import training_flops

    spec = spec_from_config(load_config_dict(cfg), device="cpu")
    est = estimate_memory(spec)
    return {"peak_bytes": est.peak_bytes, "phase": est.peak_phase,
            "terms": {t.key: int(sum(x.bytes for x in est.terms if x.key == t.key)) for t in est.terms},
            "flops_per_token": training_flops(spec).per_token}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--only", default="", help="run configurations whose name contains this")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    from danlu.errors import DanluError

    os.environ.setdefault("DANLU_HOME", str(ROOT / ".pytest_cache" / "danlu_home"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "long.jsonl")
        for model, method, batch, length in GRID:
            name = f"{model} {method} b{batch} L{length}"
            if args.only and args.only not in name:
                continue
            cfg = config_for(model, method, batch, length, data, Path(tmp) / "run", args.steps)
            try:
                pred = predict(cfg)
            except DanluError as exc:  # a method not registered in this checkout is recorded as such
                rows.append({"config": name, "skipped": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]})
                print(f"{name:40s} skipped: {rows[-1]['skipped']}", flush=True)
                continue
            got = measure(cfg)
            row = {"config": name, "model": model, "method": method, "batch_size": batch, "max_length": length,
                   "measured": got, "predicted": pred}
            if "peak_rss_bytes" in got:
                row["ratio"] = round(pred["peak_bytes"] / got["peak_rss_bytes"], 4)
            rows.append(row)
            print(f"{name:40s} measured {got.get('peak_rss_bytes', 0) / 2**20:8.1f} MiB  predicted "
                  f"{pred['peak_bytes'] / 2**20:8.1f} MiB  ratio {row.get('ratio', '-')}", flush=True)
    report = {"date": dt.date.today().isoformat(), "machine": machine(), "matmul_fp32_gflops": round(matmul_gflops(), 1),
              "command": "PYTHONPATH=src python bench/plan_calibrate.py " + " ".join(sys.argv[1:]),
              "steps_per_run": args.steps, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"plan-{report['date']}-cpu.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def machine() -> dict:
    import peft
    import psutil
    import torch
    import transformers

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "threads": psutil.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
