"""Synthetic tasks with a known answer for the preference and classification stages.

Every chosen answer says the thing is "blue", every rejected one says "red"; the rest of the
answer (random words) is shared, so the only thing to learn is the property. Held-out pairs use
prompts and word orders never seen in training."""

from __future__ import annotations

import random

WORDS = ["apple", "river", "window", "music", "garden", "paper", "train", "cloud", "stone", "bread",
         "light", "table", "phone", "coffee", "forest", "market", "letter", "summer", "horse", "bridge"]


def preference_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, *rest = rng.sample(WORDS, 5)
        tail = " ".join(rest)
        rows.append({"prompt": f"Tell me about the {a} and the {b}.",
                     "chosen": f"The {a} is blue, {tail}.", "rejected": f"The {a} is red, {tail}."})
    return rows


def unpaired_rows(pairs: list[dict]) -> list[dict]:
    out = []
    for p in pairs:
        out.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        out.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    return out
