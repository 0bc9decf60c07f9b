"""Where a `danlu train` run's memory peaks, and what it costs in CPU time: the run's peak RSS at
each moment (data, model loading, setup, every step, after training), its CPU seconds
(user + sys) and the planner's data-aware prediction, as one JSON line.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/train_phases.py examples/quickstart.yaml [KEY=VALUE ...]

Used for issue 18's memory comparison with the seed recipe (docs/notes/issue-18g.md):
`train.gradient_checkpointing=true` against the default."""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main(config: str, overrides: list[str]) -> dict:
    import psutil
    from transformers import TrainerCallback

    from danlu.config.load import load_config
    from danlu.train import runner

    proc, phase, phases = psutil.Process(), {"now": "start"}, {}

    def sample():
        while True:
            rss = proc.memory_info().rss
            phases[phase["now"]] = max(phases.get(phase["now"], 0), rss)
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    original = runner.load_base

    def load_base(ctx):  # bench-only wrap: the loading phase
        phase["now"] = "load"
        try:
            return original(ctx)
        finally:
            phase["now"] = "setup"

    runner.load_base = load_base

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            phase["now"] = f"step {state.global_step:03d}"

        def on_train_end(self, args, state, control, **kwargs):
            phase["now"] = "train end"

    cfg = load_config(config, overrides)
    phase["now"] = "data"
    t0 = time.perf_counter()
    result = runner.run_training(cfg, overwrite=True, callbacks=[Steps()])
    phase["now"] = "done"
    time.sleep(0.05)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    steps = sorted(((k, v) for k, v in phases.items() if k.startswith("step")), key=lambda kv: -kv[1])
    return {"config": config, "overrides": overrides, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_by_phase": {k: v for k, v in phases.items() if not k.startswith("step")},
            "largest_steps": dict(steps[:3]), "steps": result.info.get("global_step"),
            "predicted_peak_bytes": result.info.get("predicted_peak_bytes")}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
