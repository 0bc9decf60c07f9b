"""A stage's memory shape: what a training stage adds to memory — rows per micro-batch (DPO runs
chosen and rejected together), extra models held on the device (DPO's reference, PPO's value /
reward / reference models, the distillation teacher), generation caches (PPO, GRPO), and what
its loss keeps of the logits. Every Stage class returns one from `memory_shape(run)`, built from
its own typed options; the planner reads it through the stage registry. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from danlu.methods.shape import MethodShape, ModelShape


@dataclass
class ExtraModel:
    role: str  # reference | teacher | reward | value
    params: int
    trainable: int = 0  # PPO's value model trains alongside the policy
    arch: ModelShape | None = None  # the model's shape, when it differs from the policy's (teacher)
    forward_rows: int = 0  # rows it runs forward on each step (its logits are a transient)


@dataclass
class StageShape:
    rows: int = 1  # sequences per sample in the policy's forward (2: chosen + rejected)
    lm_logits: bool = True  # the loss needs vocabulary logits (False: a score / class head)
    head_outputs: int = 0  # classes or 1 (reward) when lm_logits is False
    extra: list[ExtraModel] = field(default_factory=list)
    generate_tokens: int = 0  # tokens generated per row (PPO, GRPO): KV cache
    teacher_logits: bool = False  # distillation: full teacher distributions at every label position
    notes: list[str] = field(default_factory=list)


@dataclass
class PlannedRun:
    """What a stage's memory shape reads of the run being planned."""

    arch: ModelShape  # the policy model
    method: MethodShape  # what the method trains and adds
    resolve: Callable[[str], ModelShape]  # another model's shape by name (a distillation teacher)


def reference_model(run: PlannedRun) -> list[ExtraModel]:
    """A frozen copy of the policy, unless the policy is an adapter (the base with the adapter
    switched off is the reference: no extra weights)."""
    if run.method.trains_base:
        return [ExtraModel("reference", run.arch.n_params, forward_rows=2)]
    return []


def preference_shape(run: PlannedRun) -> StageShape:
    """Chosen and rejected in one forward, against a reference policy (DPO, KTO)."""
    shape = StageShape(rows=2, extra=reference_model(run))
    if not shape.extra:
        shape.notes.append("reference = the base with the adapter switched off (no second copy)")
    return shape
