"""Logit distillation on danlu's SFT trainer: the same data, collators (padding or packing) and
label positions; the teacher sees the same batch and the loss mixes KL to its distribution with
the cross-entropy on the labels (loss.py). Logged per step: distill_kl (mean KL per label token
at temperature T) and distill_ce (mean cross-entropy); eval_loss stays the plain cross-entropy,
so it compares with an SFT run's."""

from __future__ import annotations

import torch

from danlu.stages.kd.loss import IGNORE, distill_loss
from danlu.train.loss import accepts_logits_to_keep
from danlu.train.trainer import CausalLMTrainer


class DistillTrainer(CausalLMTrainer):
    """Set `teacher` (a frozen model), `kd` (the stage options) and `vocab` before train()."""

    teacher = None
    kd = None
    vocab = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._kd_sums = {"ce_sum": 0.0, "kl_sum": 0.0, "n": 0}

    def _logits(self, model, inputs: dict, keep, use_keep: bool) -> torch.Tensor:
        if use_keep:
            return model(**inputs, logits_to_keep=keep, use_cache=False).logits[..., : self.vocab]
        return model(**inputs, use_cache=False).logits[:, keep, : self.vocab]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        shift = inputs.pop("shift_labels")
        inputs.pop("labels", None)
        keep = shift.ne(IGNORE).any(0).nonzero().squeeze(-1)  # (K,) positions where some row has a label
        student = self._logits(model, inputs, keep, self._keep_logits)
        teacher_inputs = {k: v.to(self.teacher.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        with torch.no_grad():
            teacher = self._logits(self.teacher, teacher_inputs, keep.to(self.teacher.device),
                                   accepts_logits_to_keep(self.teacher)).to(student.device)
        targets = shift[:, keep]
        loss, sums = distill_loss(student, teacher, targets, temperature=self.kd.temperature, alpha=self.kd.alpha,
                                  denom=num_items_in_batch)
        if model.training:
            self.count_loss_tokens(sums["n"])
            for key in self._kd_sums:
                value = sums[key]  # kept on the device until logged: no host sync per micro-batch
                self._kd_sums[key] = self._kd_sums[key] + (value.detach() if torch.is_tensor(value) else value)
        n_proc = self.accelerator.num_processes
        if self.args.average_tokens_across_devices and num_items_in_batch is not None and n_proc > 1:
            loss = loss * n_proc  # DDP averages gradients over ranks
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        sums = {k: float(v) for k, v in self._kd_sums.items()}
        if "loss" in logs and sums["n"]:
            logs["distill_kl"] = round(sums["kl_sum"] / sums["n"], 6)
            logs["distill_ce"] = round(sums["ce_sum"] / sums["n"], 6)
            self._kd_sums = {"ce_sum": 0.0, "kl_sum": 0.0, "n": 0}
        super().log(logs, start_time)


def build_distill_trainer(ctx, stage, train_dataset, eval_dataset):
    from danlu.stages.kd.teacher import check_logit_width, check_same_vocabulary
    from danlu.train.trainer import build_causal_lm_trainer

    teacher = ctx.teacher
    vocab = check_same_vocabulary(ctx.tokenizer, teacher.tokenizer)
    check_logit_width(vocab, teacher.model, ctx.model)
    cls = type("DistillTrainer", (DistillTrainer,), {"teacher": teacher.model, "kd": stage, "vocab": vocab})
    return build_causal_lm_trainer(ctx, train_dataset, eval_dataset, trainer_cls=cls)
