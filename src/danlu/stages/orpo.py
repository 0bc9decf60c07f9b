"""ORPO: supervised fine-tuning and preference alignment in one loss, with no reference model:
NLL(chosen) − λ·log σ(log odds(chosen) − log odds(rejected)), odds(y) = p/(1−p) with p the
per-token mean probability of y (Hong et al. 2024). Runs TRL's ORPOTrainer (trl.experimental.orpo)
on danlu's tokenised pairs; with images in the prompt (a vision-language model), the same loss in
a DPOTrainer over TRL's vision collator (danlu.stages._vision_preference)."""

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


@cache
def vision_orpo_trainer_class():
    from trl import DPOTrainer

    from danlu.stages._trl_common import CountTokens
    from danlu.stages._vision_preference import orpo_vision_loss
    from danlu.train.trainer import DanluTrainerMixin

    class DanluVisionORPOTrainer(DanluTrainerMixin, CountTokens, DPOTrainer):
        """TRL's DPOTrainer (its vision collator, batching, logging) with ORPO's loss and no reference."""

        def _compute_loss(self, model, inputs, return_outputs):
            loss, metrics = orpo_vision_loss(model, inputs, self.beta)
            mode = "train" if model.training else "eval"
            for name, value in metrics.items():
                self._metrics[mode][name].append(value)
            return (loss, None) if return_outputs else loss

    return DanluVisionORPOTrainer


@register_stage("orpo")
class ORPO(Stage):
    summary = "preference pairs without a reference model: SFT loss + odds-ratio penalty (ORPO)"
    sample_kind = "preference"

    beta: float = Field(0.1, gt=0, description="λ: weight of the odds-ratio term against the SFT loss (0.1 in the paper).")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(rows=2, notes=["no reference model"])

    def build_datasets(self, ctx):
        from danlu.stages._preference_data import build_row_datasets
        from danlu.stages._vision_preference import encode_vision_pair, is_vision_run, text_pair

        return build_row_datasets(ctx, ("preference",), encode_vision_pair if is_vision_run(ctx) else text_pair)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.stages._vision_preference import is_vision_run

        if is_vision_run(ctx):
            return self._vision_trainer(ctx, train_dataset, eval_dataset)
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

    def _vision_trainer(self, ctx, train_dataset, eval_dataset):
        from trl import DPOConfig

        from danlu.stages._trl_common import finish, trl_arguments
        from danlu.stages._vision_preference import processor_of, save_tokenizer_only, vision_collator
        from danlu.stages.dpo import before_training
        from danlu.train.callbacks import standard_callbacks

        processor = processor_of(ctx)
        args = trl_arguments(ctx, DPOConfig, has_eval=eval_dataset is not None, beta=self.beta)
        trainer = vision_orpo_trainer_class()(
            model=ctx.model, ref_model=None, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processor, data_collator=vision_collator(processor, ctx.config.train.max_length),
            callbacks=standard_callbacks(ctx))
        trainer = finish(save_tokenizer_only(trainer, ctx), ctx)
        before_training(ctx, trainer, kind="orpo", beta=self.beta)
        return trainer

    def after_training(self, ctx, trainer) -> dict:
        from danlu.stages.dpo import after_preference_training

        return after_preference_training(ctx, trainer, kind="orpo", beta=self.beta)
