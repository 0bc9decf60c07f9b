"""A tiny image task made by code (no downloads), for vision-language tests and the README's
example: each image is a coloured shape on a light background; the question asks its colour, so
the answer is decided by the pixels (chance: 1 in len(COLOURS)). Rows are OpenAI-style messages
with an image_url content part pointing at a PNG beside the JSONL file."""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (235, 200, 20)}
SHAPES = ("square", "circle", "triangle")
QUESTION = "What colour is the shape?"


def draw(colour: str, shape: str, size: int, rng: random.Random):
    """One RGB image: `shape` in `colour`, at a random place, on a slightly noisy light background."""
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(225, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    pen = ImageDraw.Draw(img)
    side = rng.randint(size // 2, size - 4)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    box = [x, y, x + side - 1, y + side - 1]
    fill = COLOURS[colour]
    if shape == "square":
        pen.rectangle(box, fill=fill)
    elif shape == "circle":
        pen.ellipse(box, fill=fill)
    else:
        pen.polygon([(x + side // 2, y), (x, y + side - 1), (x + side - 1, y + side - 1)], fill=fill)
    return img


def write_split(out: Path, name: str, n: int, *, size: int, seed: int) -> Path:
    """`n` rows in out/NAME.jsonl with their PNGs in out/images/; returns the JSONL path."""
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
        rel = f"images/{name}-{i:04d}.png"
        draw(colour, shape, size, rng).save(out / rel)
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": rel}},
                                         {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": colour}]}))
    path = out / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_shapes(out: str | Path, *, train: int = 64, test: int = 24, size: int = 56, seed: int = 0) -> dict:
    """The colour task: out/train.jsonl and out/test.jsonl (different seeds), images under out/images/."""
    out = Path(out)
    return {"train": write_split(out, "train", train, size=size, seed=seed),
            "test": write_split(out, "test", test, size=size, seed=seed + 1)}
