"""Direct preference optimisation on {prompt, chosen, rejected} pairs.

  loss: sigmoid   DPO: −log σ(β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])
  loss: ipo       IPO: ([per-token log-ratio margin] − 1/(2β))², robust to over-fitting
  loss: simpo     SimPO: −log σ(β·[mean log π(c) − mean log π(r)] − γ), no reference model

sigmoid and ipo run TRL's DPOTrainer, simpo TRL's CPOTrainer (trl.experimental.cpo) with the
NLL term off. With an adapter method the reference is the base with the adapter disabled (no
second copy in memory); a full fine-tune keeps a frozen copy of the base."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape, preference_shape


@cache
def dpo_trainer_class():
    from trl import DPOTrainer

    from danlu.stages._trl_common import CountTokens
    from danlu.train.trainer import DanluTrainerMixin

    class DanluDPOTrainer(DanluTrainerMixin, CountTokens, DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # danlu tokenised it: prompt_ids / chosen_ids / rejected_ids

    return DanluDPOTrainer


@cache
def cpo_trainer_class():
    from trl.experimental.cpo import CPOTrainer

    from danlu.stages._trl_common import CountTokens, legacy_pair_features
    from danlu.train.trainer import DanluTrainerMixin

    class DanluCPOTrainer(DanluTrainerMixin, CountTokens, CPOTrainer):
        def tokenize_row(self, feature, model=None):
            return legacy_pair_features(feature)

    return DanluCPOTrainer


def preference_metrics(ctx, trainer, *, kind: str, beta: float, prefix: str = "eval_") -> dict:
    """Held-out implicit reward margins (see preference_eval); {} without eval data."""
    from danlu.stages._preference_eval import held_out_pairs, margin_summary, reward_margins

    rows = held_out_pairs(trainer.eval_dataset)
    if not rows:
        return {}
    model = trainer.accelerator.unwrap_model(trainer.model)
    ref = getattr(trainer, "ref_model", None)
    ref = trainer.accelerator.unwrap_model(ref) if ref is not None else None
    if "images" in rows[0]:
        from danlu.stages._vision_preference import processor_of, vision_margins

        margins = vision_margins(model, processor_of(ctx), rows, kind=kind, beta=beta, ref_model=ref)
        return margin_summary(margins, prefix=prefix)
    margins = reward_margins(model, rows, kind=kind, beta=beta, pad_id=ctx.tokenizer.pad_token_id, ref_model=ref)
    return margin_summary(margins, prefix=prefix)


def before_training(ctx, trainer, *, kind: str, beta: float) -> None:
    """Held-out margins of the starting model, kept for run_info (`eval_*_before`). Only where they
    are informative: with a reference model the implicit reward margin is 0 before training."""
    from danlu.stages._preference_eval import NEEDS_REFERENCE

    if not NEEDS_REFERENCE[kind]:
        ctx.held_out_before = preference_metrics(ctx, trainer, kind=kind, beta=beta, prefix="eval_before_")


def after_preference_training(ctx, trainer, *, kind: str, beta: float) -> dict:
    from danlu.stages._trl_common import drop_ref_after_training

    out = {**ctx.held_out_before, **preference_metrics(ctx, trainer, kind=kind, beta=beta)}
    drop_ref_after_training(trainer)
    return out


@register_stage("dpo")
class DPO(Stage):
    summary = "preference pairs: DPO (loss sigmoid), IPO (ipo) or reference-free SimPO (simpo)"
    sample_kind = "preference"

    beta: float = Field(
        0.1, gt=0, description="β: how far the policy may move from the reference (higher stays closer). "
        "IPO: τ; SimPO: reward scale (2–2.5 typical)."
    )
    loss: Literal["sigmoid", "ipo", "simpo"] = Field(
        "sigmoid", description="sigmoid: DPO; ipo: IPO (squared loss); simpo: SimPO (no reference model)."
    )
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO target reward margin γ (loss: simpo only).")
    sft_weight: float = Field(
        0.0, ge=0, description="Add this × the NLL of the chosen answer (RPO; with simpo: CPO-SimPO). 0: off."
    )

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return preference_shape(run)

    def build_datasets(self, ctx):
        from danlu.stages._preference_data import build_row_datasets
        from danlu.stages._vision_preference import encode_vision_pair, is_vision_run, text_pair

        vision = is_vision_run(ctx)
        if vision and self.loss == "simpo":
            from danlu.errors import ConfigError

            raise ConfigError("dpo.loss: simpo does not take images yet (TRL's CPOTrainer reads token ids only)",
                              where="dpo.loss", hint="use loss: sigmoid or ipo, or stage: orpo (no reference model)")
        return build_row_datasets(ctx, ("preference",), encode_vision_pair if vision else text_pair)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.stages._trl_common import finish, reference_model, trl_arguments
        from danlu.stages._vision_preference import is_vision_run, processor_of, vision_collator
        from danlu.train.callbacks import standard_callbacks

        vision = is_vision_run(ctx)
        common = dict(train_dataset=train_dataset, eval_dataset=eval_dataset, callbacks=standard_callbacks(ctx),
                      processing_class=processor_of(ctx) if vision else ctx.tokenizer)
        if vision:
            common["data_collator"] = vision_collator(common["processing_class"], ctx.config.train.max_length)
        has_eval = eval_dataset is not None
        if self.loss == "simpo":
            from trl.experimental.cpo import CPOConfig

            args = trl_arguments(ctx, CPOConfig, has_eval=has_eval, beta=self.beta, loss_type="simpo",
                                 simpo_gamma=self.simpo_gamma, cpo_alpha=self.sft_weight)
            trainer = finish(cpo_trainer_class()(model=ctx.model, args=args, **common), ctx)
            before_training(ctx, trainer, kind="simpo", beta=self.beta)
            return trainer
        from trl import DPOConfig

        losses, weights = [self.loss], [1.0]
        if self.sft_weight:
            losses, weights = losses + ["sft"], weights + [self.sft_weight]
        args = trl_arguments(ctx, DPOConfig, has_eval=has_eval, beta=self.beta, loss_type=losses, loss_weights=weights)
        trainer = dpo_trainer_class()(model=ctx.model, ref_model=reference_model(ctx), args=args, **common)
        if vision:
            from danlu.stages._vision_preference import save_tokenizer_only

            save_tokenizer_only(trainer, ctx)
        return finish(trainer, ctx)

    def after_training(self, ctx, trainer) -> dict:
        kind = "simpo" if self.loss == "simpo" else "dpo"
        return after_preference_training(ctx, trainer, kind=kind, beta=self.beta)
