"""AdaLoRA (PEFT): LoRA in SVD form P·Λ·Q whose rank budget moves during training to the
matrices that matter most (importance = |weight × gradient|, smoothed). Needs the run's total
steps (the schedule: warm up `tinit` steps, prune until `total - tfinal`, then hold) and a call
after every optimizer step (a callback), plus an orthogonality penalty on P and Q."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from danlu.errors import ConfigError, DanluError
from danlu.methods.base import MethodContext, invalid
from danlu.methods.peft_base import PEFT_TASK, PeftMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape, low_rank_shape


@register_method("adalora")
class AdaLora(PeftMethod):
    name: Literal["adalora"] = "adalora"
    init_r: int = Field(12, ge=1, description="Starting rank of every adapted matrix.")
    target_r: int = Field(8, ge=1, description="Average rank left after pruning (the budget).")
    alpha: float | None = Field(None, gt=0, alias="lora_alpha", description="Scaling numerator. Default 2·init_r.")
    dropout: float = Field(0.0, ge=0, lt=1, alias="lora_dropout", description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt: all-linear or names.")
    tinit: int = Field(0, ge=0, description="Steps before pruning starts.")
    tfinal: int = Field(0, ge=0, description="Last steps, after pruning, with the ranks fixed.")
    delta_t: int = Field(1, ge=1, alias="deltaT", description="Steps between two budget reallocations.")
    beta1: float = Field(0.85, gt=0, lt=1, description="EMA factor of the sensitivity.")
    beta2: float = Field(0.85, gt=0, lt=1, description="EMA factor of its uncertainty.")
    orth_reg_weight: float = Field(0.5, ge=0, description="Weight of the penalty ‖PᵀP − I‖ + ‖QQᵀ − I‖.")

    trains = "SVD-form low-rank P·Λ·Q, rank pruned to a budget"
    can_merge = True
    inference_cost = "none after merge; small extra matmul unmerged"
    memory_class = "low (importance scores add ~2× the adapter)"

    @model_validator(mode="after")
    def _check(self):
        if self.target_r > self.init_r:
            raise invalid(f"target_r ({self.target_r}) must not exceed init_r ({self.init_r}): ranks only shrink")
        return self

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        r = self.init_r  # A, B and the singular values E (one per rank) on every target
        shape = low_rank_shape("adalora", arch, rank=r, target_modules=self.target_modules, dropout=self.dropout,
                               extra_per_module=r)
        shape.notes.append(f"AdaLoRA: memory at the initial rank {r}; ranks shrink as training prunes them")
        return shape

    def peft_config(self, ctx: MethodContext, model):
        from peft import AdaLoraConfig

        total = ctx.total_steps
        if not total:
            raise DanluError("AdaLoRA needs the run's number of optimizer steps")
        if self.tinit + self.tfinal >= total:
            raise ConfigError(
                f"method.tinit ({self.tinit}) + method.tfinal ({self.tfinal}) leave no pruning steps "
                f"in a run of {total} optimizer steps",
                where="method.tinit", hint="lower tinit/tfinal or train longer (train.max_steps / train.epochs)",
            )
        return AdaLoraConfig(
            init_r=self.init_r, target_r=self.target_r, lora_alpha=self.alpha or 2.0 * self.init_r,
            lora_dropout=self.dropout, target_modules=self.target_modules, tinit=self.tinit, tfinal=self.tfinal,
            deltaT=self.delta_t, beta1=self.beta1, beta2=self.beta2, orth_reg_weight=self.orth_reg_weight,
            total_step=total, task_type=PEFT_TASK[ctx.task],
        )

    def check_resume(self) -> None:
        from danlu.errors import UserError

        raise UserError("an AdaLoRA run cannot continue from a checkpoint: its rank allocator's importance "
                        "scores are not saved, and pruning changes the adapter's shapes",
                        hint="start again with --overwrite (or train.resume: never), or use lora")

    def callbacks(self, ctx) -> list:
        from danlu.methods._adalora_callback import RankAllocation

        return [RankAllocation()]

    def extra_loss(self, model):
        """PEFT adds this penalty only when the model computes the loss itself (labels passed);
        danlu computes the loss, so it adds the same term here."""
        import torch

        if not self.orth_reg_weight:
            return None
        terms = []
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_A" in name or "lora_B" in name) and p.numel():
                cov = p @ p.T if "lora_A" in name else p.T @ p  # (r, r)
                terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
        return self.orth_reg_weight * torch.stack(terms).mean() if terms else None
