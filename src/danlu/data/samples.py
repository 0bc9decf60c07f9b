"""Small image and speech samples made by code (no downloads): what the image-classification and
speech-recognition quickstarts and tests train on (`danlu data samples image|speech DIR`).

- image: 32 px PNGs of a square or a disc on a noisy background; the shape's colour is the class
  (red / green / blue), written as a folder per class and as {image, label} rows (labels.jsonl).
- speech: "words" rendered as tone pairs (each word two pitches of its own, 0.12 s each) in clips of
  one to three words, as 8 kHz WAV files (so training resamples them to 16 kHz), with
  {audio, text} rows (train.jsonl, eval.jsonl). A model can only transcribe them by listening.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 230)}
# word → its two pitches (Hz): sixteen pitches, each used once, spaced evenly on the mel scale
TONE_WORDS = {"yes": (300, 1550), "no": (390, 1770), "up": (490, 2010), "down": (590, 2270),
              "left": (700, 2560), "right": (820, 2870), "是": (950, 3210), "否": (1090, 3580)}
SPEECH_RATE = 8000
TONE_S, GAP_S = 0.12, 0.08


def _image(colour: tuple[int, int, int], rng: random.Random, size: int = 32):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size))
    im.putdata([tuple(rng.randint(90, 160) for _ in range(3)) for _ in range(size * size)])
    draw = ImageDraw.Draw(im)
    r = rng.randint(6, 11)
    x, y = rng.randint(r, size - r), rng.randint(r, size - r)
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape((x - r, y - r, x + r, y + r), fill=tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour))
    return im


def make_image_samples(out: Path, per_class: int = 20, seed: int = 0) -> Path:
    """out/images/CLASS/N.png for every colour class, and out/labels.jsonl ({image, label} rows with
    paths relative to it). Returns out."""
    rng = random.Random(seed)
    rows = []
    for label, colour in COLOURS.items():
        folder = out / "images" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = folder / f"{i:03d}.png"
            _image(colour, rng).save(name)
            rows.append({"image": str(name.relative_to(out)), "label": label})
    rng.shuffle(rows)
    _write_jsonl(out / "labels.jsonl", rows)
    return out


def _clip(words: list[str], rng: random.Random):
    import numpy as np

    n = int(TONE_S * SPEECH_RATE)
    t = np.arange(n) / SPEECH_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks
    parts = [np.zeros(int(rng.uniform(0.05, 0.2) * SPEECH_RATE))]
    for w in words:
        for f in TONE_WORDS[w]:
            parts.append(0.5 * rng.uniform(0.6, 1.0) * ramp * np.sin(2 * np.pi * f * rng.uniform(0.98, 1.02) * t))
        parts.append(np.zeros(int(GAP_S * SPEECH_RATE)))
    audio = np.concatenate(parts)
    return (audio + rng.gauss(0, 0.01) * np.random.default_rng(rng.randint(0, 2**31)).standard_normal(len(audio)))


def make_speech_samples(out: Path, n_train: int = 160, n_eval: int = 24, seed: int = 0,
                        max_words: int = 3) -> Path:
    """out/clips/N.wav and out/train.jsonl, out/eval.jsonl ({audio, text} rows). Returns out."""
    import soundfile as sf

    rng = random.Random(seed)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    vocab = list(TONE_WORDS)
    rows = []
    for i in range(n_train + n_eval):
        words = [rng.choice(vocab) for _ in range(rng.randint(1, max_words))]
        name = out / "clips" / f"{i:04d}.wav"
        sf.write(str(name), _clip(words, rng), SPEECH_RATE, subtype="PCM_16")
        rows.append({"audio": str(name.relative_to(out)), "text": " ".join(words)})
    _write_jsonl(out / "train.jsonl", rows[:n_train])
    _write_jsonl(out / "eval.jsonl", rows[n_train:])
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
