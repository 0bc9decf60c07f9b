"""Measure what `danlu train` really uses on this CPU and compare it with `danlu plan`.

For every configuration (builtin model × method × length × batch), a fresh Python process runs
the real runner (`run_training`: data, model, method, Trainer, checkpoints) for a few steps,
exactly as `danlu train` would (train.precision auto, train.release_memory on: nothing is
switched off for the measurement), while a thread samples the process's RSS (psutil) and
glibc's bytes in use (mallinfo2, all arenas); the peak RSS is `ru_maxrss`. At the start of
every step after the first (optimizer states exist, the previous step's memory trimmed) a
callback reads RSS and live bytes: what a step adds on top of them is the step's transient
memory. The planner predicts the same configuration from its config alone.

    PYTHONPATH=src python bench/plan_calibrate.py                 # measure, write the table
    PYTHONPATH=src python bench/plan_calibrate.py --only small     # a subset (substring match)
    PYTHONPATH=src python bench/plan_calibrate.py --from bench/results/plan-<date>-cpu.json
                                          # no runs: today's planner against a recorded reading

Writes bench/results/plan-<date>-cpu.json: machine, versions, command, and per configuration
the measured peak RSS, live bytes, baseline, tokens/s, and the prediction with its terms.
The CPU constants of src/danlu/plan/calibration.yaml are set by hand from these readings: the
process baseline (runtime_bytes) and allocator retention as printed by `fit` (also in the file),
the matmul rate (matmul_fp32_gflops) and the efficiency (tokens_per_s)."""

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
# (model, method, batch, length, train options); the two lengths per model and method are the
# accuracy target (issue 10). VALIDATION (--validation) checks what the grid does not exercise:
# gradient checkpointing, gradient accumulation, and tensors over glibc's 32 MiB mmap ceiling.
GRID = [(m, meth, b, n, {}) for m in ("builtin:tiny", "builtin:mini", "builtin:small")
        for meth in METHODS for b, n in ((4, 128), (8, 512))]
VALIDATION = [
    ("builtin:small", "lora", 8, 512, {"gradient_checkpointing": True}),
    ("builtin:small", "lora", 4, 512, {"grad_accum": 2}),
    ("builtin:small", "lora", 32, 1024, {}),  # MLP tensors of 46-92 MB, over glibc's 32 MiB mmap threshold
    ("builtin:mini", "full", 16, 1024, {}),
]
# --real (issue 18): real pretrained architectures, full/LoRA/QLoRA × two lengths. The model
# source is the label's `pkg:` name unless --model-dir LABEL=DIR points at a plain HF folder.
REAL_MODELS = {"smollm2-135m": "pkg:smollm2-135m-instruct", "gemma3-270m": "pkg:gemma3-270m"}
# what the recorded run_config names: the same shapes from the bundled table, no files needed
REAL_HUB = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3-270m": "google/gemma-3-270m"}
# One row per micro-batch (2 CPU cores: a 4 × 1024-token step of gemma-3 full takes many minutes);
# the cheap configurations first, so that a reading cut short still covers both models.
REAL = [(m, meth, 1, n, {}) for n in (256, 1024) for meth in ("lora", "qlora", "full") for m in REAL_MODELS]
REAL_VALIDATION = [("smollm2-135m", "full", 4, 256, {})]  # --real --validation: four rows per micro-batch


def config_name(model: str, method: str, batch: int, length: int, options: dict) -> str:
    extra = "".join(f" {k}={v}" for k, v in options.items())
    return f"{model} {method} b{batch} L{length}{extra}"


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


def config_for(model: str, method: str, batch: int, length: int, data: Path, out: Path, steps: int,
               options: dict | None = None, sources: dict | None = None) -> dict:
    return {
        "model": {"name_or_path": (sources or {}).get(model, REAL_MODELS.get(model, model))},
        "data": {"train": str(data), "format": "text"},
        "method": METHODS[method],
        "train": {"max_steps": steps, "batch_size": batch, "max_length": length, "learning_rate": 1e-3,
                  "logging_steps": 1, "save_steps": 10_000, "report_to": [], **(options or {})},
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
    # the peak RSS of each moment of the run: which one the process peak comes from
    phase, phases = {"now": "start"}, {}

    def live_bytes() -> int:
        if libc is None:
            return 0
        m = libc.mallinfo2()
        return m.uordblks + m.hblkhd  # in use: heap chunks + mmapped chunks, summed over arenas

    def sample():
        while True:
            rss = proc.memory_info().rss
            peak["rss"] = max(peak["rss"], rss)
            peak["live"] = max(peak["live"], live_bytes())
            phases[phase["now"]] = max(phases.get(phase["now"], 0), rss)
            time.sleep(0.001)

    threading.Thread(target=sample, daemon=True).start()
    from danlu.config.load import load_config_dict
    from danlu.train import runner

    before = {}
    original = runner.load_base

    def load_base(ctx):
        before["rss"] = proc.memory_info().rss
        phase["now"] = "load"
        try:
            return original(ctx)
        finally:
            phase["now"] = "setup"

    runner.load_base = load_base  # bench-only wrap: the RSS before the model loads
    from transformers import TrainerCallback

    starts = {"rss": 0, "live": 0}

    class StepStart(TrainerCallback):
        """RSS and live bytes when a step begins, from the second step on (states allocated)."""

        def on_step_begin(self, args, state, control, **kwargs):
            phase["now"] = "first step" if state.global_step == 0 else "steps"
            if state.global_step >= 1:
                starts["rss"] = max(starts["rss"], proc.memory_info().rss)
                starts["live"] = max(starts["live"], live_bytes())

    cfg = load_config_dict(json.loads(cfg_json))
    phase["now"] = "data"
    result = runner.run_training(cfg, overwrite=True, callbacks=[StepStart()])
    phase["now"] = "end"
    rows = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")][1:]  # the first step includes warm-up
    print("RESULT " + json.dumps({
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sampled_rss_bytes": peak["rss"], "live_bytes_peak": peak["live"],
        "rss_before_model_bytes": before.get("rss"), "rss_step_start_bytes": starts["rss"],
        "live_step_start_bytes": starts["live"], "tokens_per_s": statistics.median(speeds) if speeds else None,
        "steps": result.info.get("global_step"), "precision": result.info.get("precision"),
        "release_memory": cfg.train.release_memory,
        "peak_rss_by_phase": phases,
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
def predict(cfg: dict, precision: str | None = None) -> dict:
    """As `danlu plan CONFIG` on this CPU: the spec from the config, the data's tokens counted;
    `precision` (a recorded run's) instead of what train.precision auto resolves to here."""
    from danlu.config.load import load_config_dict
    from danlu.plan.activations import activation_bytes
    from danlu.plan.calibration import calibration
    from danlu.plan.estimate import estimate_memory, numerics
    from danlu.plan.loading import checkpoint_bytes, tokenizer_bytes
    from danlu.plan.spec import spec_from_config
    from danlu.plan.throughput import training_flops
    from danlu.plan.tokens import count_tokens

    run_cfg = load_config_dict(cfg)
    spec = spec_from_config(run_cfg, device="cpu", precision=precision)
    counted = count_tokens(run_cfg)
    spec.dataset_tokens, spec.extra["lengths"] = counted.tokens, counted.lengths  # the data's largest batch
    spec.checkpoint_bytes = int(checkpoint_bytes(spec))  # the files of the source measured (recorded for replays)
    est = estimate_memory(spec)
    act = activation_bytes(spec.arch, spec.shape, numerics(spec), batch=spec.batch_size, seq=spec.max_length,
                           checkpointing=spec.gradient_checkpointing)
    return {"peak_bytes": est.peak_bytes, "phase": est.peak_phase, "precision": spec.precision,
            "terms": {t.key: int(sum(x.bytes for x in est.terms if x.key == t.key)) for t in est.terms},
            "process_bytes": int(calibration().cpu_runtime_bytes), "block_activation_bytes": int(sum(act.per_block)),
            "dataset_tokens": spec.dataset_tokens, "checkpoint_bytes": spec.checkpoint_bytes,
            "tokenizer_bytes": int(tokenizer_bytes(spec.arch.vocab)),
            "tokenizer_load_bytes": int(tokenizer_bytes(spec.arch.vocab, loading=True)),
            "flops_per_token": training_flops(spec).per_token}


def portable(cfg: dict, model: str = "") -> dict:
    """The run's config with its temporary paths replaced: enough to plan it again anywhere
    (a real model by its hub id, whose shape the bundled table holds)."""
    out = {**cfg, "data": {**cfg["data"], "train": "long.jsonl"}, "output_dir": "run"}
    if model in REAL_HUB:
        out["model"] = {**cfg["model"], "name_or_path": REAL_HUB[model]}
    return out


def fit(rows: list[dict]) -> dict:
    """The CPU constants of calibration.yaml from measured rows (independent of their current values):
    runtime_bytes: median of (RSS at a step's start − the predicted weights, trainable
    parameters, optimizer states and dataset); allocator_retention: median, over rows whose
    block activations are at least 64 MiB (smaller ones drown in sampling noise), of the RSS a
    step adds beyond the live bytes it adds, per byte of those activations."""
    base, retention, load = [], [], []
    for r in rows:
        if r.get("validation"):
            continue
        m, p = r.get("measured", {}), r.get("predicted", {})
        if not m.get("rss_step_start_bytes") or not m.get("live_step_start_bytes"):
            continue
        t = p["terms"]
        tokenizer = p.get("tokenizer_bytes", 0)
        dataset = t.get("runtime", 0) - p["process_bytes"] - tokenizer
        base.append(m["rss_step_start_bytes"] - sum(t.get(k, 0) for k in ("weights", "trainable", "optimizer"))
                    - dataset - tokenizer)
        if m.get("rss_before_model_bytes"):  # load_runtime_bytes: the process as the model starts loading
            load.append(m["rss_before_model_bytes"] - p.get("tokenizer_load_bytes", 0) - dataset)
        made = p["block_activation_bytes"]
        if made >= 64 * 2**20:
            kept = (m["peak_rss_bytes"] - m["rss_step_start_bytes"]) - (m["live_bytes_peak"] - m["live_step_start_bytes"])
            retention.append(kept / made)
    return {"runtime_bytes": int(statistics.median(base)) if base else None,
            "load_runtime_bytes": int(statistics.median(load)) if load else None,
            "allocator_retention": round(statistics.median(retention), 3) if retention else None,
            "rows_for_runtime": len(base), "rows_for_retention": len(retention),
            "retention_range": [round(min(retention), 3), round(max(retention), 3)] if retention else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--only", default="", help="run configurations whose name contains this")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--validation", action="store_true", help="also run the VALIDATION configurations")
    ap.add_argument("--real", action="store_true", help="run the REAL grid (real pretrained models) instead of GRID")
    ap.add_argument("--model-dir", action="append", default=[], metavar="LABEL=DIR",
                    help="with --real: a plain HF folder for a REAL_MODELS label (default: its pkg: source)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from", dest="reading", default=None,
                    help="no measuring: predict the rows of this recorded reading again with the current planner "
                         "(prints the table and the fit; writes only with --out)")
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    from danlu.errors import DanluError

    os.environ.setdefault("DANLU_HOME", str(ROOT / ".pytest_cache" / "danlu_home"))
    sources = dict(x.split("=", 1) for x in args.model_dir)
    grid = (REAL + (REAL_VALIDATION if args.validation else [])) if args.real else \
        GRID + (VALIDATION if args.validation else [])
    recorded, source = {}, None
    if args.reading:
        reading = json.loads(Path(args.reading).read_text())
        recorded = {r["config"]: r["measured"] for r in reading["rows"] if "measured" in r}
        source = {"file": Path(args.reading).name, "date": reading.get("date"), "command": reading.get("command"),
                  "note": "measured values copied unchanged; predictions and fit made again by the current planner"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "long.jsonl")
        for model, method, batch, length, options in grid:
            name = config_name(model, method, batch, length, options)
            if (args.only and args.only not in name) or (args.reading and name not in recorded):
                continue
            cfg = config_for(model, method, batch, length, data, Path(tmp) / "run", args.steps, options,
                             sources)
            try:
                pred = predict(cfg, (recorded.get(name) or {}).get("precision"))
            except DanluError as exc:  # a method not registered in this checkout is recorded as such
                rows.append({"config": name, "skipped": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]})
                print(f"{name:40s} skipped: {rows[-1]['skipped']}", flush=True)
                continue
            except Exception as exc:  # noqa: BLE001 — a planner bug must not lose the measurement
                pred = {"peak_bytes": 0, "error": f"{type(exc).__name__}: {exc}"[:300]}
            got = recorded[name] if args.reading else measure(cfg)
            row = {"config": name, "model": model, "method": method, "batch_size": batch, "max_length": length,
                   "train_options": options, "validation": (model, method, batch, length, options) not in GRID + REAL,
                   "run_config": portable(cfg, model), "measured": got, "predicted": pred}
            if "peak_rss_bytes" in got:
                row["ratio"] = round(pred["peak_bytes"] / got["peak_rss_bytes"], 4)
            rows.append(row)
            if not args.reading:  # what is measured so far survives a crash of a later run
                (Path(tmp).parent / f"plan-calibrate-partial-{os.getpid()}.json").write_text(json.dumps(rows, indent=1))
            print(f"{name:40s} measured {got.get('peak_rss_bytes', 0) / 2**20:8.1f} MiB  predicted "
                  f"{pred['peak_bytes'] / 2**20:8.1f} MiB  ratio {row.get('ratio', '-')}", flush=True)
    report = {"date": dt.date.today().isoformat(), "machine": machine(), "matmul_fp32_gflops": round(matmul_gflops(), 1),
              "command": "PYTHONPATH=src python bench/plan_calibrate.py " + " ".join(sys.argv[1:]),
              "steps_per_run": args.steps, "fit": fit(rows), "rows": rows}
    if source:
        report["measured_in"] = source
    within = [r for r in rows if "ratio" in r and not r.get("validation")]
    print(f"within ±15%: {sum(abs(r['ratio'] - 1) <= 0.15 for r in within)} of {len(within)}; "
          f"fit from these readings: {report['fit']}")
    if args.reading and not args.out:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"plan-{report['date']}-cpu{'-real' if args.real else ''}.json"
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
