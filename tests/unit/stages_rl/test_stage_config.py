"""Config-time checks of the RL and distill stages: each bad setting is a ConfigError naming the key."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from danlu.config.load import load_config
from danlu.errors import ConfigError, DataError
from tests.conftest import tiny_config, write_jsonl


def _cfg(tmp_path, **sections):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    return load_config(str(tiny_config(tmp_path, data, **sections)), [])


@pytest.mark.parametrize("sections, key, words", [
    ({"stage": "ppo"}, "ppo", "no reward"),
    ({"stage": "grpo", "grpo": {"reward_functions": ["contains:a"], "reward_weights": [1, 2]}},
     "grpo.reward_weights", "2 reward_weights for 1 rewards"),
    ({"stage": "rloo", "rloo": {"reward_functions": ["nope"]}}, "rloo.reward_functions[0]", "unknown reward function"),
    ({"stage": "ppo", "ppo": {"reward_functions": ["contains:a"], "max_completion_length": 128}},
     "ppo.max_completion_length", "leaves no room"),
    ({"stage": "distill"}, "distill.teacher", "needs a teacher"),
])
def test_bad_stage_settings(tmp_path, sections, key, words):
    cfg = _cfg(tmp_path, **sections)
    with pytest.raises(ConfigError) as info:
        cfg.stage_options().check(cfg)
    assert key in str(info.value) and words in str(info.value)


def test_unknown_option_suggests_the_name(tmp_path):
    with pytest.raises(ConfigError) as info:
        _cfg(tmp_path, stage="ppo", ppo={"reward_function": ["contains:a"]})
    assert "reward_functions" in str(info.value)


def test_good_settings_pass(tmp_path):
    cfg = _cfg(tmp_path, stage="grpo", grpo={"reward_functions": ["contains:a", "json_valid"], "reward_model": "rm",
                                             "reward_weights": [1.0, 0.5, 2.0]})
    cfg.stage_options().check(cfg)
    assert cfg.grpo.n_rewards() == 3 and "distill" not in cfg.to_yaml_dict()


def test_group_sizes():
    from danlu.stages.grpo import GRPO
    from danlu.stages.rl.trl_online import check_group_sizes

    args = SimpleNamespace(per_device_train_batch_size=6, gradient_accumulation_steps=1, world_size=1,
                           per_device_eval_batch_size=8)
    with pytest.raises(ConfigError) as info:
        check_group_sizes(GRPO(num_generations=4), args, 16, False)
    assert "grpo.num_generations" in str(info.value)
    check_group_sizes(GRPO(num_generations=3), args, 16, False)
    with pytest.raises(DataError):
        check_group_sizes(GRPO(num_generations=3), args, 1, False)
    with pytest.raises(ConfigError) as info:
        check_group_sizes(GRPO(num_generations=3), args, 16, True)
    assert "eval.batch_size" in str(info.value)
