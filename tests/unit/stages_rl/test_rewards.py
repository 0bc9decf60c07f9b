"""Reward functions named in config: each built-in on answers where the result is known, the
user's own callables (module:function and file.py:function), and the errors for bad names."""

from __future__ import annotations

import pytest

from danlu.errors import ConfigError
from danlu.stages.rl.rewards import completion_text, is_json, parse_reward_function, parse_reward_functions

ANSWERS = ["Thanks, happy to help.", '{"plan": "team", "price": 12}', "```json\n[1, 2]\n```", "no digits here"]


def _conv(texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


@pytest.mark.parametrize("spec, expected", [
    ("contains:Thanks", [1, 0, 0, 0]),
    ("contains:\"", [0, 1, 0, 0]),
    ("regex:\\d+", [0, 1, 1, 0]),
    ("regex:^Thanks", [1, 0, 0, 0]),
    ("json_valid", [0, 1, 1, 0]),
])
def test_builtin_rewards(spec, expected):
    fn = parse_reward_function(spec, "grpo.reward_functions[0]")
    prompts = [[{"role": "user", "content": "q"}]] * len(ANSWERS)
    assert fn(prompts=prompts, completions=_conv(ANSWERS), completion_ids=[[1]] * 4) == expected
    assert fn(prompts=prompts, completions=ANSWERS) == expected  # plain-text completions too
    assert fn.__name__ == spec


@pytest.mark.parametrize("text, ok", [("", False), ("null", True), ("{'a': 1}", False), ("  [1]  ", True),
                                      ("```\n{\"a\": 1}\n```", True), ("{\"a\": 1} trailing", False)])
def test_is_json(text, ok):
    assert is_json(text) is ok


def test_user_functions_from_a_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(prompts, completions, **kwargs):\n"
        "    return [1.0 / (1 + len(c[0]['content'])) for c in completions]\n"
        "def uses_topic(prompts, completions, topic=None, **kwargs):\n"
        "    return [1.0 if t == 'billing' else None for t in topic]\n")
    monkeypatch.chdir(tmp_path)
    by_file = parse_reward_function("my_rewards.py:brevity", "ppo.reward_functions[0]")
    by_module = parse_reward_function("my_rewards:uses_topic", "ppo.reward_functions[1]")
    assert by_file(prompts=None, completions=_conv(["abc"])) == [0.25]
    assert by_module(prompts=None, completions=_conv(["a", "b"]), topic=["billing", "other"]) == [1.0, None]


@pytest.mark.parametrize("spec, words", [
    ("regex:(", "not a valid regular expression"),
    ("contains:", "needs the text"),
    ("no_such_module_xyz:f", "cannot import"),
    ("json:f", "has no function"),
    ("length", "unknown reward function"),
    ("missing_file.py:f", "not found"),
])
def test_bad_reward_names_are_config_errors(spec, words):
    with pytest.raises(ConfigError) as info:
        parse_reward_functions(["contains:ok", spec], where="grpo.reward_functions")
    text = str(info.value)
    assert words in text and "grpo.reward_functions[1]" in text


def test_completion_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"
