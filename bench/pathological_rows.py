"""Time and peak memory of reading and encoding pathological rows with train.max_length 128
(RELIABILITY.md case 16): one 50 MB row, one 50 MB word, one conversation of N turns.

    python bench/pathological_rows.py row|word|turns [--mb 50] [--turns 20000] [--max-length 128]

The data file is written by a child process first, so the peak RSS printed (ru_maxrss of this
process, MB) is that of reading + encoding alone. Prints one JSON line per run."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)


def write_case(case: str, path: Path, mb: int, turns: int) -> None:
    if case == "row":
        words = ("lorem ipsum dolor sit amet " * (mb * 1024 * 1024 // 27 + 1))[: mb * 1024 * 1024]
        row = {"instruction": words, "input": "", "output": "ok"}
    elif case == "word":
        row = {"instruction": "x" * (mb * 1024 * 1024), "input": "", "output": "ok"}
    else:
        msgs = []
        for i in range(turns):
            msgs += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
        row = {"messages": msgs}
    ok = {"instruction": "hi", "input": "", "output": "hello"}
    path.write_text(json.dumps(row) + "\n" + json.dumps(ok) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["row", "word", "turns"])
    ap.add_argument("--write", help=argparse.SUPPRESS)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--turns", type=int, default=20000)
    ap.add_argument("--max-length", type=int, default=128)
    a = ap.parse_args()
    if a.write:
        write_case(a.case, Path(a.write), a.mb, a.turns)
        return

    from danlu.config.schema import DataConfig
    from danlu.data.dataset import encode_sample, iter_samples
    from danlu.data.report import DataReport
    from danlu.chat.templates import resolve_template
    from danlu.models.load import load_tokenizer

    tpl = resolve_template(load_tokenizer("builtin:tiny"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        subprocess.run([sys.executable, __file__, a.case, "--write", str(path), "--mb", str(a.mb),
                        "--turns", str(a.turns)], check=True)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        report, kept = DataReport(), 0
        for sample in iter_samples(str(path), report=report):
            kept += encode_sample(sample, tpl, DataConfig(train=str(path)), a.max_length, report) is not None
        secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": a.case, "mb": a.mb, "turns": a.turns, "seconds": round(secs, 2),
                      "peak_rss_mb": round(peak), "rss_before_mb": round(base), "kept": kept,
                      "dropped": report.num_dropped, "truncated": report.truncated}))


if __name__ == "__main__":
    sys.exit(main())
