"""Knowledge distillation: a large teacher trains a small student (the seeds: deploy the student).

  mode: logits    the student learns the teacher's next-token distribution on the training data:
                  loss = alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · cross-entropy
                  (same tokenizer required: a clear error otherwise)
  mode: sequence  the teacher writes an answer to each prompt and the student is fine-tuned on
                  them (any tokenizer)

The teacher is anything danlu loads: a run directory, an artefact, a hub id, a local model or a
builtin. The student is the run's model with the run's method (full, lora, qlora ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.errors import ConfigError
from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import ExtraModel, PlannedRun, StageShape


@register_stage("distill")
class Distill(Stage):
    summary = "knowledge distillation: logit KL to a teacher at temperature T, or teacher-written answers"
    sample_kind = "conversation"

    teacher: str | None = Field(
        None, description="The teacher: a run directory, artefact, hub id, local model or builtin.")
    mode: Literal["logits", "sequence"] = Field(
        "logits", description="logits: match the teacher's distributions; sequence: train on the teacher's answers.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of both distributions (logits mode).")
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the KL term; 1 − alpha weighs the cross-entropy on the labels.")
    max_completion_length: int = Field(256, ge=1, description="Most tokens the teacher writes per answer (sequence).")
    teacher_temperature: float = Field(0.0, ge=0, description="Sampling temperature of the teacher (0: greedy).")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        arch = run.resolve(self.teacher) if self.teacher else run.arch
        notes = [] if self.teacher else ["no distill.teacher given: teacher assumed the student's size"]
        return StageShape(extra=[ExtraModel("teacher", arch.n_params, arch=arch, forward_rows=1)],
                          teacher_logits=True, notes=notes)

    def check(self, run_config) -> None:
        if not self.teacher:
            raise ConfigError("stage distill needs a teacher", where="distill.teacher",
                              hint="e.g. distill: {teacher: runs/big-sft} (a run, an artefact, a hub id or a model dir)")

    def build_datasets(self, ctx):
        from danlu.stages.kd.teacher import check_same_vocabulary, load_teacher, teacher_tokenizer

        if self.mode == "logits":  # before any model is loaded
            check_same_vocabulary(ctx.tokenizer, teacher_tokenizer(self.teacher))
        ctx.teacher = load_teacher(self.teacher)
        if self.mode == "sequence":
            from danlu.stages.kd.sequence import build_sequence_datasets

            datasets = build_sequence_datasets(ctx, self)
            ctx.teacher = None  # the student trains on the answers alone
            return datasets
        return super().build_datasets(ctx)

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        if self.mode == "sequence":
            from danlu.train.trainer import build_causal_lm_trainer

            return build_causal_lm_trainer(ctx, train_dataset, eval_dataset)
        from danlu.stages.kd.trainer import build_distill_trainer

        return build_distill_trainer(ctx, self, train_dataset, eval_dataset)
