"""ORPO: supervised fine-tuning and preference alignment in one loss, with no reference model:
NLL(chosen) − λ·log σ(log odds(chosen) − log odds(rejected)), odds(y) = p/(1−p) with p the
per-token mean probability of y (Hong et al. 2024). Runs TRL's ORPOTrainer (trl.experimental.orpo)
on danlu's tokenised pairs."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


@cache
def orpo_trainer_class():
    from trl.experimental.orpo import ORPOTrainer

    from danlu.stages._trl_common import CountTokens, legacy_pair_features
    from danlu.train.trainer import DanluTrainerMixin

    class DanluORPOTrainer(DanluTrainerMixin, CountTokens, ORPOTrainer):
        def tokenize_row(self, feature, model=None):
            return legacy_pair_features(feature)

    return DanluORPOTrainer


@register_stage("orpo")
class ORPO(Stage):
    summary = "preference pairs without a reference model: SFT loss + odds-ratio penalty (ORPO)"
    sample_kind = "preference"

    beta: float = Field(0.1, gt=0, description="λ: weight of the odds-ratio term against the SFT loss (0.1 in the paper).")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(rows=2, notes=["no reference model"])

    def build_datasets(self, ctx):
        from danlu.stages._preference_data import build_row_datasets, encode_pair

        return build_row_datasets(ctx, ("preference",), encode_pair)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from trl.experimental.orpo import ORPOConfig

        from danlu.stages._trl_common import finish, trl_arguments
        from danlu.stages.dpo import before_training
        from danlu.train.callbacks import standard_callbacks

        args = trl_arguments(ctx, ORPOConfig, has_eval=eval_dataset is not None, beta=self.beta)
        trainer = orpo_trainer_class()(model=ctx.model, args=args, train_dataset=train_dataset,
                                       eval_dataset=eval_dataset, processing_class=ctx.tokenizer,
                                       callbacks=standard_callbacks(ctx))
        trainer = finish(trainer, ctx)
        before_training(ctx, trainer, kind="orpo", beta=self.beta)
        return trainer

    def after_training(self, ctx, trainer) -> dict:
        from danlu.stages.dpo import after_preference_training

        return after_preference_training(ctx, trainer, kind="orpo", beta=self.beta)
