"""KTO: alignment from answers marked desirable or not, no pairs needed (Ethayarajh et al. 2024).
Loss per answer: 1 − σ(β·(log-ratio − z)) if desirable, 1 − σ(β·(z − log-ratio)) if not, where
the log-ratio is log π(y) − log π_ref(y) and z a batch estimate of KL(π‖π_ref). Runs TRL's
KTOTrainer on danlu's tokenised rows; preference pairs are accepted too (chosen desirable,
rejected not). With an adapter method the reference is the base with the adapter disabled."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from danlu.errors import ConfigError
from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape, preference_shape


def add_kl_completions(dataset, batch_size: int):
    """TRL's KL estimate: each prompt paired with its batch neighbour's answer
    (x_1, y_n), (x_2, y_1) ... within batches of the training batch size."""
    if "KL_completion_ids" in dataset.column_names:
        return dataset

    def rotate(batch):
        batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
        return batch

    return dataset.map(rotate, batched=True, batch_size=batch_size)


@cache
def kto_trainer_class():
    from trl import KTOTrainer

    from danlu.stages._trl_common import CountTokens
    from danlu.train.trainer import DanluTrainerMixin

    class DanluKTOTrainer(DanluTrainerMixin, CountTokens, KTOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # danlu tokenised it (prompt_ids / completion_ids / label); only the KL pairing is TRL's
            if self.calculate_KL:
                dataset = add_kl_completions(dataset, args.per_device_train_batch_size)
            return dataset

    return DanluKTOTrainer


@register_stage("kto")
class KTO(Stage):
    summary = "unpaired answers marked desirable or not (KTO); preference pairs also accepted"
    sample_kind = "unpaired"

    beta: float = Field(0.1, gt=0, description="β: how far the policy may move from the reference.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable answers (λ_D).")
    undesirable_weight: float = Field(
        1.0, gt=0, description="Loss weight of undesirable answers (λ_U); keep λ_D·n_D / (λ_U·n_U) in [1, 4/3]."
    )

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return preference_shape(run)

    def check(self, run_config) -> None:
        if run_config.train.batch_size < 2:
            raise ConfigError("KTO needs train.batch_size ≥ 2: its KL estimate pairs each prompt with another "
                              "answer of the same batch", where="train.batch_size", hint="set train.batch_size: 4 or more")

    def build_datasets(self, ctx):
        from danlu.stages._preference_data import build_row_datasets, encode_unpaired

        # TRL's KTO reads in order (its KL pairs are fixed batches): danlu shuffles once, up front
        return build_row_datasets(ctx, ("unpaired", "preference"), encode_unpaired, shuffle=True)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from trl import KTOConfig

        from danlu.stages._trl_common import finish, reference_model, trl_arguments
        from danlu.train.callbacks import standard_callbacks

        args = trl_arguments(ctx, KTOConfig, has_eval=eval_dataset is not None, beta=self.beta,
                             desirable_weight=self.desirable_weight, undesirable_weight=self.undesirable_weight)
        trainer = kto_trainer_class()(model=ctx.model, ref_model=reference_model(ctx), args=args,
                                      train_dataset=train_dataset, eval_dataset=eval_dataset,
                                      processing_class=ctx.tokenizer, callbacks=standard_callbacks(ctx))
        return finish(trainer, ctx)

    def after_training(self, ctx, trainer) -> dict:
        from danlu.stages._preference_eval import label_accuracy
        from danlu.stages.dpo import after_preference_training

        out = {}
        if trainer.eval_dataset is not None and len(trainer.eval_dataset):
            model = trainer.accelerator.unwrap_model(trainer.model)
            ref = trainer.accelerator.unwrap_model(trainer.ref_model) if trainer.ref_model is not None else None
            rows = [trainer.eval_dataset[i] for i in range(len(trainer.eval_dataset))]
            out = label_accuracy(model, rows, beta=self.beta, pad_id=ctx.tokenizer.pad_token_id, ref_model=ref)
        return {**out, **after_preference_training(ctx, trainer, kind="kto", beta=self.beta)}  # + pairs, where both halves are held out
