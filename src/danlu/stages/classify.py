"""Classification: a label per text (sequence) or per word (token), on encoders (BERT family) and
decoders alike, with any method (full, LoRA, QLoRA ...; an adapter also trains the new head).

Data: `text` and `label` columns by default (rename with text_column / label_column; a second
text with text_pair_column), or `tokens` and `tags` for token classification. Labels are names
or integer ids; the label set is read from the training data (or given in `labels`) and saved
with the model (config.json id2label, and danlu.json for an adapter). Metrics: accuracy and
macro-F1 on the eval data, next to the majority-class baseline."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


@cache
def classify_trainer_class():
    from transformers import Trainer

    from danlu.stages._trl_common import CountTokens
    from danlu.train.trainer import DanluTrainerMixin

    class ClassifyTrainer(DanluTrainerMixin, CountTokens, Trainer):
        pass

    return ClassifyTrainer


def compute_metrics(eval_pred) -> dict:
    import numpy as np

    from danlu.stages._classify_data import accuracy_and_f1

    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    preds = np.asarray(logits).argmax(-1).reshape(-1)
    return accuracy_and_f1(preds, np.asarray(eval_pred.label_ids).reshape(-1))


@register_stage("classify")
class Classify(Stage):
    summary = "text classification: one label per text (sequence) or per word (token); accuracy, macro-F1"
    sample_kind = "labelled"

    level: Literal["sequence", "token"] = Field("sequence", description="sequence: a label per text; token: per word.")
    text_column: str = Field("text", description="Column holding the text (token level: the list of words).")
    label_column: str = Field("label", description="Column holding the label (token level: the list of tags).")
    text_pair_column: str | None = Field(None, description="Column with a second text (pairs: NLI, matching).")
    labels: list[str] | None = Field(
        None, description="Label names in id order; default: every label in the training data, sorted."
    )

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(lm_logits=False, head_outputs=len(self.labels) if self.labels else 2)

    @property
    def task(self) -> str:  # the model head the runner loads
        return "token_cls" if self.level == "token" else "seq_cls"

    def model_kwargs(self, ctx) -> dict:
        names = ctx.labels
        return {"num_labels": len(names), "id2label": dict(enumerate(names)),
                "label2id": {n: i for i, n in enumerate(names)}, "pad_token_id": ctx.tokenizer.pad_token_id}

    def build_datasets(self, ctx):
        from danlu.stages._classify_data import build_classify_datasets

        train, held, labels = build_classify_datasets(ctx, self)
        ctx.labels = labels
        ctx.artefact_meta.update(labels=labels, num_labels=len(labels))
        ctx.train_rows = train
        return train, held

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

        from danlu.stages._trl_common import finish
        from danlu.train.args import training_arguments
        from danlu.train.callbacks import standard_callbacks

        collator_cls = DataCollatorForTokenClassification if self.level == "token" else DataCollatorWithPadding
        trainer = classify_trainer_class()(
            model=ctx.model,
            args=training_arguments(ctx, has_eval=eval_dataset is not None),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator_cls(ctx.tokenizer),
            processing_class=ctx.tokenizer,
            compute_metrics=compute_metrics,
            callbacks=standard_callbacks(ctx),
        )
        return finish(trainer, ctx)

    def after_training(self, ctx, trainer) -> dict:
        from danlu.stages._classify_data import majority_baseline

        if not trainer.eval_dataset:
            return {}
        metrics = trainer.evaluate()
        out = {k: round(v, 4) for k, v in metrics.items() if k in ("eval_accuracy", "eval_macro_f1", "eval_loss")}
        out["majority_baseline_accuracy"] = majority_baseline(ctx.train_rows, trainer.eval_dataset)
        out["eval_samples"] = len(trainer.eval_dataset)
        return out
