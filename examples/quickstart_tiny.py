"""The tiny quickstart (`make demo-tiny`): fine-tune a builtin model on FlowDesk's 200 support answers
(half Chinese, half English), then ask it 5 of the training questions and measure exact match
over all 200. Runs offline on a laptop CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "quickstart_tiny.yaml"
DATA = ROOT / "examples" / "data" / "support_qa.jsonl"
RUN = ROOT / "runs" / "quickstart-tiny"


def normalise(text: str) -> str:
    return " ".join(text.split())


def main() -> int:
    t0 = time.time()
    print(f"$ danlu train {CONFIG.relative_to(ROOT)} --overwrite", flush=True)
    overrides = sys.argv[1:]  # e.g. train.epochs=30
    cmd = [sys.executable, "-m", "danlu", "train", str(CONFIG), f"output_dir={RUN}", *overrides, "--overwrite"]
    if subprocess.call(cmd, cwd=ROOT) != 0:
        return 1

    from danlu.infer.generate import generate
    from danlu.infer.load import load_for_inference

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [[{"role": "user", "content": r["instruction"]}] for r in rows]
    loaded = load_for_inference(str(RUN))
    answers = generate(loaded, questions, max_new_tokens=96, batch_size=50)
    hits = [normalise(a["text"]) == normalise(r["output"]) for a, r in zip(answers, rows)]

    print("\n$ danlu chat runs/quickstart-tiny --prompt ...   (5 of the training questions)")
    for i in (0, 1, 2, 3, 101):
        mark = "✓" if hits[i] else "✗"
        print(f"\nQ: {rows[i]['instruction']}\nA: {answers[i]['text']}  {mark}")
    rate = sum(hits) / len(hits)
    print(f"\nexact match on all {len(rows)} training questions: {sum(hits)}/{len(rows)} = {rate:.1%}")
    print(f"total time: {time.time() - t0:.0f}s; run directory: {RUN.relative_to(ROOT)}/")
    return 0 if rate >= 0.8 else 3


if __name__ == "__main__":
    sys.exit(main())
