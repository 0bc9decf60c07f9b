"""One training step of danlu or of LLaMA-Factory under torch.profiler (issue 24): where the time goes.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/profile_step.py danlu bench/.work/peer/danlu.yaml
    OMP_NUM_THREADS=1 bench/.work/lf-venv/bin/python bench/profile_step.py lf bench/.work/peer/lf-neat.yaml

Runs the trainer as its CLI would, times every optimizer step (wall and this process's CPU
seconds), profiles steps --at .. --at+--n-1 and stops after them. Prints the per-step times, the
tokens each step saw and the top operators by self CPU time; --out writes it all as JSON."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class StepProfiler(TrainerCallback):
    def __init__(self, at: int, n: int, stop_after: int):
        self.at, self.n, self.stop_after = at, n, stop_after
        self.steps, self.prof, self.t = [], None, None

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.at - 1 and self.n > 0:
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
            self.prof.__enter__()
        self.t = (time.perf_counter(), cpu_s())

    def on_step_end(self, args, state, control, **kw):
        wall, cpu = time.perf_counter() - self.t[0], cpu_s() - self.t[1]
        self.steps.append({"step": state.global_step, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                           "profiled": self.prof is not None})
        print(f"step {state.global_step}: {wall:.2f} s wall, {cpu:.2f} CPU-s", flush=True)
        if self.prof is not None and state.global_step >= self.at + self.n - 1:
            self.prof.__exit__(None, None, None)
            self.table = self.prof.key_averages(group_by_input_shape=False)
            self.by_shape = self.prof.key_averages(group_by_input_shape=True)
            self.prof = None
        if state.global_step >= self.stop_after:
            control.should_training_stop = True


def run_danlu(config: str, cb) -> None:
    sys.path.insert(0, os.environ.get("DANLU_SRC", str(Path(__file__).resolve().parent.parent / "src")))
    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    cfg = load_config(config)
    run_training(cfg, overwrite=True, callbacks=[cb])


def run_lf(config: str, cb) -> None:
    import yaml
    from llamafactory.train.tuner import run_exp

    run_exp(args=yaml.safe_load(Path(config).read_text()), callbacks=[cb])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["danlu", "lf"])
    ap.add_argument("config")
    ap.add_argument("--at", type=int, default=3, help="first profiled optimizer step (1-based)")
    ap.add_argument("--n", type=int, default=2, help="steps profiled")
    ap.add_argument("--stop-after", type=int, default=6)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="", help="ops (comma-separated) to list by input shape, e.g. aten::copy_")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cb = StepProfiler(args.at, args.n, args.stop_after)
    (run_danlu if args.side == "danlu" else run_lf)(args.config, cb)
    timed = [s for s in cb.steps if s["step"] >= args.at]
    cpu, wall = sum(s["cpu_s"] for s in timed), sum(s["wall_s"] for s in timed)
    print(f"{args.side}: steps {args.at}..{cb.steps[-1]['step']}: {cpu:.2f} CPU-s, {wall:.2f} s wall "
          f"(load {os.getloadavg()[0]:.1f}), peak RSS {peak_rss_gib():.3f} GiB", flush=True)
    summary = {"side": args.side, "steps": cb.steps, "cpu_s": cpu, "wall_s": wall, "src": os.environ.get("DANLU_SRC"),
               "peak_rss_gib": peak_rss_gib(), "load": os.getloadavg()[0]}
    if args.n == 0:
        if args.out:
            Path(args.out).write_text(json.dumps(summary, indent=2))
        return
    table = cb.table
    total = sum(e.self_cpu_time_total for e in table)
    rows = sorted(table, key=lambda e: -e.self_cpu_time_total)[:args.top]
    print(f"\n{args.side}: profiled steps {args.at}..{args.at + args.n - 1}, self CPU total {total / 1e6:.2f} s")
    print(f"{'op':60} {'self s':>8} {'%':>6} {'calls':>7}")
    out_rows = []
    for e in rows:
        print(f"{e.key[:60]:60} {e.self_cpu_time_total / 1e6:8.3f} {100 * e.self_cpu_time_total / total:6.1f} "
              f"{e.count:7d}")
        out_rows.append({"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count})
    for op in filter(None, args.shapes.split(",")):
        print(f"\n{op} by input shape")
        for e in sorted((e for e in cb.by_shape if e.key == op), key=lambda e: -e.self_cpu_time_total)[:8]:
            print(f"  {e.self_cpu_time_total / 1e6:8.3f} s {e.count:6d} calls  {str(e.input_shapes)[:110]}")
    if args.out:
        Path(args.out).write_text(json.dumps({**summary, "self_total_s": total / 1e6, "top": out_rows}, indent=2))


if __name__ == "__main__":
    main()
