"""Classification: a label per text (sequence) or per word (token), on encoders (BERT family) and
decoders alike, with any method (full, LoRA, QLoRA ...; an adapter also trains the new head).

Data: `text` and `label` columns by default (rename with text_column / label_column; a second
text with text_pair_column), or `tokens` and `tags` for token classification. Labels are names
or integer ids; the label set is read from the training data (or given in `labels`) and saved
with the model (config.json id2label, and danlu.json for an adapter). Metrics: accuracy and
macro-F1 on the eval data, next to the majority-class baseline.

Images (ViT family, `modality: image`, or auto for a model whose config describes images): a folder
per class (data.train: photos/ with photos/CLASS/*.png) or rows naming an image file (`image` and
`label` columns; paths relative to the data file), read by the model's image processor
(stages/_classify_images.py)."""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field, PrivateAttr

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
    modality: Literal["auto", "text", "image"] = Field(
        "auto", description="What is classified: text, or image (a ViT-family model with its image processor); "
        "auto: image when the model's config describes images."
    )
    image_column: str = Field("image", description="Images: the column naming each row's image (relative to the "
                              "rows' own location). One sub-tree of images per class needs no columns.")
    _image: bool | None = PrivateAttr(None)

    def check(self, run_config) -> None:
        from danlu.errors import ConfigError

        self._image = self.is_image(run_config.model.name_or_path, run_config.model.revision)
        if self._image and self.level == "token":
            raise ConfigError("classify.level: token needs a text model; this is an image model",
                              where="classify.level", hint="use level: sequence for images")

    def is_image(self, name_or_path: str, revision: str | None = None) -> bool:
        if self.modality != "auto":
            return self.modality == "image"
        from danlu.models.load import model_config_dict

        config = model_config_dict(name_or_path, revision=revision)
        return "image_size" in config and "vocab_size" not in config and "text_config" not in config

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(lm_logits=False, head_outputs=len(self.labels) if self.labels else 2)

    @property
    def task(self) -> str:  # the model head the runner loads (check() has decided auto)
        if self._image or (self._image is None and self.modality == "image"):
            return "image_cls"
        return "token_cls" if self.level == "token" else "seq_cls"

    def load_processor(self, run_config):
        if self.task != "image_cls":
            return super().load_processor(run_config)
        from danlu.models.load import load_processor

        m = run_config.model
        return load_processor(m.name_or_path, "image", revision=m.revision, trust_remote_code=m.trust_remote_code)

    def model_kwargs(self, ctx) -> dict:
        names = ctx.labels
        kwargs = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                  "label2id": {n: i for i, n in enumerate(names)}}
        if self.task == "image_cls":  # a hub checkpoint's own head (ImageNet's 1,000 classes) is replaced
            return {**kwargs, "ignore_mismatched_sizes": True}
        return {**kwargs, "pad_token_id": ctx.tokenizer.pad_token_id}

    def build_datasets(self, ctx):
        from danlu.stages._classify_data import build_classify_datasets
        from danlu.stages._classify_images import build_image_datasets

        build = build_image_datasets if self.task == "image_cls" else build_classify_datasets
        train, held, labels = build(ctx, self)
        ctx.labels = labels
        ctx.artefact_meta.update(labels=labels, num_labels=len(labels))
        ctx.train_rows = train
        return train, held

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

        from danlu.stages._trl_common import finish
        from danlu.train.args import training_arguments
        from danlu.train.callbacks import standard_callbacks

        from danlu.stages._media_data import collate_images

        if self.task == "image_cls":
            collator = collate_images
        else:
            collator_cls = DataCollatorForTokenClassification if self.level == "token" else DataCollatorWithPadding
            collator = collator_cls(ctx.tokenizer)
        trainer = classify_trainer_class()(
            model=ctx.model,
            args=training_arguments(ctx, has_eval=eval_dataset is not None),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
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
        train_rows = getattr(ctx.train_rows, "label_rows", ctx.train_rows)  # images: labels without decoding
        eval_rows = getattr(trainer.eval_dataset, "label_rows", trainer.eval_dataset)
        out["majority_baseline_accuracy"] = majority_baseline(train_rows, eval_rows)
        out["eval_samples"] = len(trainer.eval_dataset)
        return out
