"""What every training stage provides. A stage's options class (the config section named after
the stage) is also its strategy: which rows it reads, how they are tokenised, and which trainer
runs it. Methods and stages are independent: `qlora × dpo` is two registry look-ups."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from danlu.schema_base import StrictModel

if TYPE_CHECKING:
    from danlu.stages.shape import PlannedRun, StageShape
    from danlu.train.context import RunContext


class Stage(StrictModel):
    summary: ClassVar[str] = ""
    # what a row must become: conversation | text | preference | unpaired | prompt | labelled
    sample_kind: ClassVar[str] = "conversation"
    # model head: causal_lm | seq_cls | token_cls | image_cls | asr
    task: ClassVar[str] = "causal_lm"

    def memory_shape(self, run: PlannedRun) -> StageShape:
        """What this stage adds to memory (danlu.stages.shape), read by the planner. The declared
        default is SFT's shape (one row, vocabulary logits, no extra model), with a note saying so."""
        from danlu.stages.registry import STAGES
        from danlu.stages.shape import StageShape

        name = next((n for n, cls in STAGES if cls is type(self)), type(self).__name__)
        return StageShape(notes=[f"stage {name!r} declares no memory shape of its own; planned as SFT"])

    def check(self, run_config) -> None:
        """Cross-section checks at config time; raise ConfigError with the reason."""

    def load_processor(self, run_config):
        """What turns a row into model inputs, saved with the artefact: the tokenizer by default; an
        image processor (image classification) or a speech processor (asr) for those stages."""
        from danlu.models.load import load_tokenizer

        m = run_config.model
        return load_tokenizer(m.name_or_path, revision=m.revision, trust_remote_code=m.trust_remote_code)

    def model_kwargs(self, ctx: RunContext) -> dict:
        """Extra from_pretrained kwargs for the base model (num_labels for classification ...)."""
        return {}

    def build_datasets(self, ctx: RunContext):
        """(train_dataset, eval_dataset or None); the default tokenises conversations for SFT."""
        from danlu.data.dataset import build_sft_datasets

        return build_sft_datasets(ctx)

    def build_trainer(self, ctx: RunContext, train_dataset, eval_dataset):
        """A transformers Trainer (or subclass) with danlu's checkpointing mixed in."""
        raise NotImplementedError

    def after_training(self, ctx: RunContext, trainer) -> dict:
        """Final figures on held-out data (accuracy, reward margins ...), written to run_info.json;
        also the place to tidy the model before the artefact is saved."""
        return {}
