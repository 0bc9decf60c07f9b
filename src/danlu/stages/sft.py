"""Supervised fine-tuning: next-token loss on the assistant's tokens (and their EOS)."""

from __future__ import annotations

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


@register_stage("sft")
class SFT(Stage):
    summary = "supervised fine-tuning on conversations (loss on assistant turns)"
    sample_kind = "conversation"

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape()

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.train.trainer import build_causal_lm_trainer

        return build_causal_lm_trainer(ctx, train_dataset, eval_dataset)
