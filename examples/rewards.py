"""Reward functions of your own for grpo / rloo / ppo, named in config as
`examples/rewards.py:concise` (a file path) or `rewards:concise` (a module importable from the
directory you run danlu in).

The protocol is TRL's: `f(prompts, completions, **kwargs) -> list[float | None]`, one number per
answer. `prompts` are lists of chat messages, `completions` are [{"role": "assistant",
"content": text}], and kwargs hold `completion_ids` plus every other field of the data row
(here: `reference`, the answer of the SFT data, when the prompts come from it). Return None for
an answer the reward does not apply to."""

from __future__ import annotations


def concise(prompts, completions, **kwargs):
    """1.0 up to 60 words, then falling linearly to 0 at 180 words."""
    scores = []
    for completion in completions:
        words = len(completion[0]["content"].split())
        scores.append(1.0 if words <= 60 else max(0.0, 1.0 - (words - 60) / 120))
    return scores


def mentions_the_product(prompts, completions, **kwargs):
    """1.0 when the answer names FlowDesk (or 流云工单), else 0.0."""
    names = ("flowdesk", "流云工单")
    return [1.0 if any(n in c[0]["content"].lower() for n in names) else 0.0 for c in completions]
