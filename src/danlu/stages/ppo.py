"""RLHF with PPO, the seeds' three-step flow: SFT → reward model (stage reward) → PPO. The policy
samples answers to prompts, a reward model (or reward functions) scores them, and PPO raises the
score while a KL penalty keeps the policy near the reference model (the starting policy).

TRL 1.16 no longer ships a PPO trainer, and no maintained PPO library runs on danlu's pinned
stack, so this is danlu's own compact implementation (stages/rl/ppo_core.py: clipped policy
objective, clipped value loss, GAE, KL penalty; stages/rl/ppo_trainer.py: rollouts and updates
on transformers' Trainer)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.stages.registry import register_stage
from danlu.stages.rl.options import RLStage
from danlu.stages.shape import ExtraModel, PlannedRun, StageShape


@register_stage("ppo")
class PPO(RLStage):
    name = "ppo"
    summary = "RLHF with PPO: value head, GAE, clipped objective, KL penalty to the reference model"

    num_ppo_epochs: int = Field(4, ge=1, description="PPO updates on each rollout (each one optimizer step).")
    cliprange: float = Field(0.2, gt=0, description="ε of the clipped policy objective: ratio kept in [1−ε, 1+ε].")
    cliprange_value: float = Field(
        0.2, gt=0, description="How far a value may move from its rollout value in one update.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")
    kl_coef: float = Field(0.05, ge=0, description="Weight of the per-token KL penalty to the reference model.")
    kl_estimator: Literal["k1", "k3"] = Field(
        "k1", description="KL estimate per token: k1 = log π − log π_ref; k3 = non-negative, lower variance.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount factor of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="λ of GAE (bias–variance trade-off of the advantages).")
    missing_eos_penalty: float | None = Field(
        None, description="Subtracted from the score of an answer cut off by max_completion_length.")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        """TRL's PPO holds four models: the policy (trains), a value model (trains; a copy of the
        backbone with a scalar head), a reward model and the reference policy (both frozen)."""
        n, method = run.arch.n_params, run.method
        extra = [ExtraModel("value", n, trainable=method.trainable if not method.trains_base else n),
                 ExtraModel("reward", n, forward_rows=1)]
        extra += [ExtraModel("reference", n, forward_rows=1)] if method.trains_base else []
        return StageShape(extra=extra, generate_tokens=self.max_completion_length,
                          notes=["value and reward models assumed the policy's size; rollouts add a KV cache"])

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.stages.rl.ppo_trainer import build_ppo_trainer

        return build_ppo_trainer(ctx, self, train_dataset, eval_dataset)
