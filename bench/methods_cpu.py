"""Every fine-tuning method on one builtin model and the quickstart data, side by side:
trainable share, peak resident memory, seconds per 100 steps, final loss; plus the bytes the
QLoRA base holds against fp32/bf16. Each method runs in its own process (clean peak RSS).

    python bench/methods_cpu.py [--model builtin:mini] [--steps 100] [--out bench/results/...]

builtin:mini and examples/data/support_qa.jsonl are the quickstart's model and data
(examples/quickstart.yaml).

CPU timings on a shared machine are noisy: the JSON records the load average around each run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "support_qa.jsonl"

# (label, method options, learning rate): rates picked per method for 100 steps on a random-init model
RUNS = [
    ("full", {"name": "full"}, 1e-3),
    ("freeze", {"name": "freeze", "layers": 2}, 1e-3),
    ("lora", {"name": "lora", "r": 8}, 5e-3),
    ("qlora", {"name": "qlora", "r": 8}, 5e-3),
    ("lora int8", {"name": "lora", "r": 8, "quantize": "int8"}, 5e-3),
    ("dora", {"name": "dora", "r": 8}, 5e-3),
    ("rslora", {"name": "rslora", "r": 8}, 5e-3),
    ("lora_plus", {"name": "lora_plus", "r": 8}, 2e-3),
    ("pissa", {"name": "pissa", "r": 8}, 5e-3),
    ("adalora", {"name": "adalora"}, 5e-3),
    ("ia3", {"name": "ia3"}, 2e-2),
    ("prefix", {"name": "prefix", "num_virtual_tokens": 16}, 2e-2),
    ("prompt", {"name": "prompt", "num_virtual_tokens": 16}, 3e-2),
    ("p_tuning", {"name": "p_tuning", "num_virtual_tokens": 16}, 1e-2),
    ("adapter", {"name": "adapter", "bottleneck": 32}, 5e-3),
    ("bitfit", {"name": "bitfit"}, 2e-2),
]


def child(spec: dict) -> dict:
    """One run in this process: train, then report what the parent cannot see from outside."""
    from danlu.config.load import load_config_dict
    from danlu.train.runner import run_training

    import resource

    import danlu.train.runner  # noqa: F401  (torch, transformers, peft imported: the baseline below)

    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = load_config_dict(spec["config"])
    t0 = time.process_time()
    result = run_training(cfg)
    cpu = time.process_time() - t0
    rows = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    info = result.info
    return {"trainable_params": info["trainable_params"], "total_params": info["total_params"],
            "trainable_percent": info["trainable_percent"], "train_runtime_s": info["train_runtime_s"],
            "cpu_s_build_train_save": round(cpu, 2), "first_loss": losses[0], "final_loss": losses[-1],
            "steps": info["global_step"], "rss_after_imports_mb": round(rss_after_imports, 1)}


def run_one(label: str, method: dict, lr: float, args, work: Path) -> dict:
    config = {
        "model": {"name_or_path": args.model},
        "data": {"train": str(DATA), "packing": False},
        "method": method,
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": lr, "max_length": 256,
                  "logging_steps": 10, "save_steps": args.steps, "report_to": [], "lr_scheduler": "cosine",
                  "warmup_ratio": 0.05},
        "output_dir": str(work / label.replace(" ", "_")),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    load_before = os.getloadavg()[0]
    out_path, err_path = work / f"{label}.out", work / f"{label}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps({"config": config})],
                                stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (KiB on Linux)
    if os.waitstatus_to_exitcode(status) != 0:
        return {"method": label, "options": method, "error": err_path.read_text()[-1500:]}
    res = json.loads(out_path.read_text().strip().splitlines()[-1])
    return {"method": label, "options": method, "learning_rate": lr, **res,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_rss_above_imports_mb": round(usage.ru_maxrss / 1024 - res["rss_after_imports_mb"], 1),
            "wall_s_per_100_steps": round(res["train_runtime_s"] / res["steps"] * 100, 2),
            "child_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2)}


def qlora_bytes(model: str) -> dict:
    import torch

    from danlu.methods.lora import Lora, base_weight_bytes
    from danlu.models.load import load_model

    out = {}
    for label, options in (("fp32", {}), ("nf4 + double quant", {"quantize": "nf4"}),
                           ("nf4", {"quantize": "nf4", "double_quant": False}), ("int8", {"quantize": "int8"})):
        method = Lora.model_validate({"name": "lora", **options})
        held = base_weight_bytes(load_model(model, dtype=torch.float32, **method.load_kwargs()))
        out[label] = {**held, "x_smaller_than_bf16": round(held["bf16_bytes"] / held["linear_weight_bytes"], 2),
                      "x_smaller_than_fp32": round(held["fp32_bytes"] / held["linear_weight_bytes"], 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:mini")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="labels to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" /
                                             f"methods-cpu-{datetime.date.today().isoformat()}.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    start_load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="danlu-bench-") as tmp:
        for label, method, lr in RUNS:
            if args.only and label not in args.only:
                continue
            t = time.time()
            rows.append(run_one(label, method, lr, args, Path(tmp)))
            print(f"{label:10s} {time.time() - t:6.1f}s {json.dumps(rows[-1], ensure_ascii=False)[:220]}", flush=True)
    result = {
        "date": datetime.date.today().isoformat(), "model": args.model, "data": str(DATA.relative_to(ROOT)),
        "steps": args.steps, "batch_size": args.batch_size, "max_length": 256, "torch_threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "note": "shared by several engineers; wall times are noisy (see load_avg_*)",
                    "load_avg_start": start_load, "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
        "rows": rows, "quantised_base": qlora_bytes(args.model),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
