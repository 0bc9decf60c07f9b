"""GRPO (Shao et al. 2024, DeepSeekMath): sample a group of answers per prompt, score each, and
use the reward relative to its group as the advantage (no value model). Runs TRL's GRPOTrainer;
rewards are named in config (`grpo.reward_functions`) or come from a reward model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.stages.registry import register_stage
from danlu.stages.rl.options import RLStage
from danlu.stages.shape import PlannedRun, StageShape, reference_model


@register_stage("grpo")
class GRPO(RLStage):
    name = "grpo"
    summary = "GRPO: group-relative rewards on sampled answers (TRL), reward functions or a reward model"

    num_generations: int = Field(4, ge=2, description="Answers sampled per prompt (one group).")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the reference model (0: no reference needed).")
    epsilon: float = Field(0.2, gt=0, description="Clipping ε of the policy ratio.")
    num_iterations: int = Field(1, ge=1, description="Updates per batch of sampled answers (μ).")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="How token losses are averaged (TRL's loss_type; dapo removes the length bias).")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the reward std of the group, the batch, or not at all.")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        extra = reference_model(run) if self.beta > 0 else []
        return StageShape(extra=extra, generate_tokens=self.max_completion_length,
                          notes=[f"batch rows are completions (num_generations per prompt); beta={self.beta}"])

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from trl import GRPOConfig, GRPOTrainer

        from danlu.stages.rl.trl_online import build_online_trainer

        return build_online_trainer(
            ctx, self, train_dataset, eval_dataset, trainer_cls=GRPOTrainer, config_cls=GRPOConfig,
            beta=self.beta, epsilon=self.epsilon, num_iterations=self.num_iterations, loss_type=self.loss_type,
            scale_rewards=self.scale_rewards)
