"""Preference pairs for the colour task (synth/shapes.py), for vision-language DPO / ORPO: the
prompt is the row's question with its image, `chosen` the shape's colour, `rejected` another colour."""

from __future__ import annotations

import json
import random
from pathlib import Path

from danlu.synth.shapes import COLOURS


def write_pairs(task: str | Path, out: str | Path | None = None, *, seed: int = 0) -> Path:
    """Pairs from a colour-task JSONL (default: pairs.jsonl beside it, so the image paths still resolve)."""
    task = Path(task)
    out = Path(out) if out else task.with_name("pairs.jsonl")
    rng, rows = random.Random(seed), []
    for line in task.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        right = row["messages"][-1]["content"]
        wrong = rng.choice(sorted(c for c in COLOURS if c != right))
        rows.append(json.dumps({"prompt": row["messages"][:-1], "chosen": right, "rejected": wrong}))
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out
