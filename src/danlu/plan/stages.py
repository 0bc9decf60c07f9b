"""What each training stage adds to memory: rows per micro-batch (DPO runs chosen and rejected
together), extra models held on the device (DPO's reference, PPO's value / reward / reference
models, the distillation teacher), generation caches (PPO, GRPO), and what its loss keeps of
the logits. Registered by stage name; options are read leniently from the stage's own section
(`dpo: {beta: 0.1}`), so stages that land later are planned from their definitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from danlu.plan.methods import opt
from danlu.registry import Registry


@dataclass
class ExtraModel:
    role: str  # reference | teacher | reward | value
    params: int
    trainable: int = 0  # PPO's value model trains alongside the policy
    arch: Any = None  # the Arch, when it differs from the policy's (teacher, reward model)
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


STAGE_PROFILES: Registry[Callable[..., StageShape]] = Registry("stage profile")
stage_profile = STAGE_PROFILES.register


def stage_shape(spec) -> StageShape:
    name = spec.stage
    if name not in STAGE_PROFILES:
        return StageShape(notes=[f"stage {name!r} has no memory profile yet; planned as SFT"])
    return STAGE_PROFILES.get(name)(spec, spec.stage_options)


@stage_profile("sft", aliases=("pretrain",))
def sft(spec, options) -> StageShape:
    return StageShape()


def _reference(spec) -> list[ExtraModel]:
    """A frozen copy of the policy, unless the policy is an adapter (the base with the adapter
    switched off is the reference: no extra weights)."""
    if spec.shape.trains_base:
        return [ExtraModel("reference", spec.arch.n_params, forward_rows=2)]
    return []


@stage_profile("dpo", aliases=("ipo", "kto"))
def dpo(spec, options) -> StageShape:
    shape = StageShape(rows=2, extra=_reference(spec))
    if not shape.extra:
        shape.notes.append("reference = the base with the adapter switched off (no second copy)")
    return shape


@stage_profile("orpo", aliases=("simpo", "cpo"))
def orpo(spec, options) -> StageShape:
    return StageShape(rows=2, notes=["no reference model"])


@stage_profile("reward", aliases=("rm",))
def reward(spec, options) -> StageShape:
    return StageShape(rows=2, lm_logits=False, head_outputs=1)


@stage_profile("classify", aliases=("seq_cls", "classification"))
def classify(spec, options) -> StageShape:
    return StageShape(lm_logits=False, head_outputs=int(opt(options, "num_labels", 2)))


@stage_profile("ppo")
def ppo(spec, options) -> StageShape:
    """TRL's PPO holds four models: the policy (trains), a value model (trains; a copy of the
    backbone with a scalar head), a reward model and the reference policy (both frozen)."""
    n = spec.arch.n_params
    extra = [ExtraModel("value", n, trainable=spec.shape.trainable if not spec.shape.trains_base else n),
             ExtraModel("reward", n, forward_rows=1)]
    extra += [ExtraModel("reference", n, forward_rows=1)] if spec.shape.trains_base else []
    gen = int(opt(options, "response_length", opt(options, "max_new_tokens", 256)))
    return StageShape(extra=extra, generate_tokens=gen,
                      notes=["value and reward models assumed the policy's size; rollouts add a KV cache"])


@stage_profile("grpo")
def grpo(spec, options) -> StageShape:
    beta = float(opt(options, "beta", 0.0))
    extra = _reference(spec) if beta > 0 else []
    gen = int(opt(options, "max_completion_length", opt(options, "max_new_tokens", 256)))
    return StageShape(extra=extra, generate_tokens=gen,
                      notes=[f"batch rows are completions (num_generations per prompt); beta={beta}"])


@stage_profile("distill", aliases=("kd", "gkd"))
def distill(spec, options) -> StageShape:
    from danlu.plan.arch import resolve_arch

    teacher = opt(options, "teacher", None) or opt(options, "teacher_model", None)
    arch = resolve_arch(teacher) if teacher else spec.arch
    notes = [] if teacher else ["no distill.teacher given: teacher assumed the student's size"]
    return StageShape(extra=[ExtraModel("teacher", arch.n_params, arch=arch, forward_rows=1)],
                      teacher_logits=True, notes=notes)
