"""The RL and distillation example configs pass their stage's checks (reward names resolve, the
example reward functions import and score), run from the repository root as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from danlu.config.load import load_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name.split("-")[0] in ("ppo", "grpo", "rloo",
                                                                                            "distill"))


def test_there_is_an_example_of_each_stage():
    assert {p.name.split("-")[0] for p in EXAMPLES} == {"ppo", "grpo", "rloo", "distill"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_its_stage_checks(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    cfg.stage_options().check(cfg)


def test_example_reward_functions(monkeypatch):
    from danlu.stages.rl.rewards import parse_reward_functions

    monkeypatch.chdir(ROOT)
    names = ["examples/rewards.py:concise", "examples/rewards.py:mentions_the_product"]
    concise, product = parse_reward_functions(names, where="grpo.reward_functions")
    answers = [[{"role": "assistant", "content": t}] for t in ("FlowDesk exports CSV.", "x " * 120)]
    assert concise(prompts=None, completions=answers) == [1.0, 0.5]
    assert product(prompts=None, completions=answers) == [1.0, 0.0]
