"""Options every RL stage shares (the reward, the length and temperature of the sampled answers),
their config-time checks, and prompt data: RL stages read prompt-only rows."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from danlu.errors import ConfigError
from danlu.stages.base import Stage

REWARD_FORMS = "regex:PATTERN, contains:TEXT, json_valid, module:function or path/to/file.py:function"


class RLStage(Stage):
    sample_kind = "prompt"
    name: ClassVar[str] = ""  # the stage's registry name, for error messages (`ppo.reward_model`)

    reward_functions: list[str] = Field(
        default_factory=list,
        description=f"Rewards computed from each answer: {REWARD_FORMS}. Summed (see reward_weights).",
    )
    reward_model: str | None = Field(
        None,
        description="A reward model (a run or artefact of stage reward, or a sequence-classification model "
        "with one output) that scores prompt + answer.",
    )
    reward_weights: list[float] | None = Field(
        None, description="One weight per reward: reward_functions in order, then reward_model. Default all 1."
    )
    max_completion_length: int = Field(64, ge=1, description="Most tokens sampled per answer.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the answers.")

    def n_rewards(self) -> int:
        return len(self.reward_functions) + (1 if self.reward_model else 0)

    def check(self, run_config) -> None:
        key = self.name
        if self.n_rewards() == 0:
            raise ConfigError(
                "no reward: this stage needs reward_functions or reward_model",
                where=f"{key}",
                hint=f"e.g. {key}: {{reward_functions: ['contains:thanks']}} or {key}: {{reward_model: runs/rm}}",
            )
        if self.reward_weights is not None and len(self.reward_weights) != self.n_rewards():
            raise ConfigError(
                f"{len(self.reward_weights)} reward_weights for {self.n_rewards()} rewards",
                where=f"{key}.reward_weights",
                hint="give one weight per reward: reward_functions in order, then reward_model",
            )
        from danlu.stages.rl.rewards import parse_reward_functions

        parse_reward_functions(self.reward_functions, where=f"{key}.reward_functions")
        if self.max_completion_length >= run_config.train.max_length:
            raise ConfigError(
                f"max_completion_length {self.max_completion_length} leaves no room for the prompt in "
                f"train.max_length {run_config.train.max_length}",
                where=f"{key}.max_completion_length",
                hint="lower it, or raise train.max_length (prompt + answer must fit)",
            )

    def build_datasets(self, ctx):
        from danlu.stages.rl.prompts import build_prompt_splits

        return build_prompt_splits(ctx, self.max_completion_length)

    def rewards(self, ctx):
        """(reward callables, weights) for this run; a reward model is loaded here."""
        from danlu.stages.rl.rewards import build_rewards

        return build_rewards(self, ctx, where=self.name)
