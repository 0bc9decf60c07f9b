"""RLOO (Ahmadian et al. 2024): REINFORCE with a leave-one-out baseline, the mean reward of the
prompt's other answers. Runs TRL's RLOOTrainer with the same rewards and prompt data as grpo."""

from __future__ import annotations

from pydantic import Field

from danlu.stages.registry import register_stage
from danlu.stages.rl.options import RLStage


@register_stage("rloo")
class RLOO(RLStage):
    name = "rloo"
    summary = "RLOO: REINFORCE with a leave-one-out baseline on sampled answers (TRL)"

    num_generations: int = Field(4, ge=2, description="Answers sampled per prompt (the baseline uses the others).")
    beta: float = Field(0.05, ge=0, description="KL coefficient to the reference model.")
    epsilon: float = Field(0.2, gt=0, description="Clipping ε of the policy ratio.")
    num_iterations: int = Field(1, ge=1, description="Updates per batch of sampled answers.")
    normalize_advantages: bool = Field(False, description="Scale advantages to mean 0, std 1 per batch.")

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from trl import RLOOConfig, RLOOTrainer

        from danlu.stages.rl.trl_online import build_online_trainer

        return build_online_trainer(
            ctx, self, train_dataset, eval_dataset, trainer_cls=RLOOTrainer, config_cls=RLOOConfig,
            beta=self.beta, epsilon=self.epsilon, num_iterations=self.num_iterations,
            normalize_advantages=self.normalize_advantages)
