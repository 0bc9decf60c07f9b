"""Pairwise reward model: a sequence-classification head with one output (the reward) trained with
the Bradley–Terry loss −log σ(r(prompt, chosen) − r(prompt, rejected)) by TRL's RewardTrainer.
The conversation is rendered with the run's chat template (kept in the artefact, so stage ppo
scores text the way the reward model saw it). After training, the pairwise accuracy on held-out
pairs (how often r(chosen) > r(rejected)) goes to run_info.json."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


@cache
def reward_trainer_class():
    from trl import RewardTrainer

    from danlu.stages._trl_common import CountTokens
    from danlu.train.trainer import DanluTrainerMixin

    class DanluRewardTrainer(DanluTrainerMixin, CountTokens, RewardTrainer):
        pass

    return DanluRewardTrainer


def pairwise_accuracy(model, rows, pad_id: int, batch_size: int = 16, prefix: str = "eval_") -> dict:
    """Held-out pairwise accuracy and mean margin r(chosen) − r(rejected)."""
    import torch

    from danlu.stages._preference_eval import margin_summary

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = []
    with torch.no_grad():
        for key in ("chosen_ids", "rejected_ids"):
            out = []
            for start in range(0, len(rows), batch_size):
                seqs = [list(r[key]) for r in rows[start:start + batch_size]]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for b, s in enumerate(seqs):
                    ids[b, :len(s)], mask[b, :len(s)] = torch.tensor(s), 1
                out.append(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float().cpu())
            scores.append(torch.cat(out))
    model.train(was_training)
    return margin_summary(scores[0] - scores[1], prefix=prefix)


@register_stage("reward")
class Reward(Stage):
    summary = "pairwise reward model (sequence-classification head, one output) on preference pairs"
    sample_kind = "preference"
    task = "seq_cls"

    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="Pull the mean reward towards 0 with this weight (0.01 recommended); null: off."
    )

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(rows=2, lm_logits=False, head_outputs=1)

    def model_kwargs(self, ctx) -> dict:
        return {"num_labels": 1, "pad_token_id": ctx.tokenizer.pad_token_id}

    def build_datasets(self, ctx):
        from danlu.chat.templates import resolve_template
        from danlu.stages._preference_data import build_row_datasets, encode_reward

        if ctx.template is None:  # the runner resolves it for causal LMs only; a reward model reads chats too
            ctx.template = resolve_template(ctx.tokenizer, ctx.config.data.template)
        ctx.artefact_meta["num_labels"] = 1
        return build_row_datasets(ctx, ("preference",), encode_reward)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from trl import RewardConfig

        from danlu.stages._trl_common import finish, trl_arguments
        from danlu.train.callbacks import standard_callbacks

        args = trl_arguments(ctx, RewardConfig, has_eval=eval_dataset is not None,
                             center_rewards_coefficient=self.center_rewards_coefficient)
        trainer = reward_trainer_class()(model=ctx.model, args=args, train_dataset=train_dataset,
                                         eval_dataset=eval_dataset, processing_class=ctx.tokenizer,
                                         callbacks=standard_callbacks(ctx))
        trainer = finish(trainer, ctx)
        ctx.held_out_before = self._held_out(ctx, trainer, prefix="eval_before_")  # the untrained head
        return trainer

    def after_training(self, ctx, trainer) -> dict:
        return {**ctx.held_out_before, **self._held_out(ctx, trainer)}

    @staticmethod
    def _held_out(ctx, trainer, prefix: str = "eval_") -> dict:
        if trainer.eval_dataset is None or len(trainer.eval_dataset) == 0:
            return {}
        rows = [trainer.eval_dataset[i] for i in range(len(trainer.eval_dataset))]
        model = trainer.accelerator.unwrap_model(trainer.model)
        return pairwise_accuracy(model, rows, ctx.tokenizer.pad_token_id, prefix=prefix)
