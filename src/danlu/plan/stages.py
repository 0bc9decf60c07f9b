"""The memory shape of a run's stage, as the stage class declares it (`Stage.memory_shape`,
danlu.stages.shape), from the stage's own options section (`dpo: {beta: 0.1}`). The planner
keeps no table of its own."""

from __future__ import annotations

from pydantic import ValidationError

from danlu.errors import UserError
from danlu.stages.shape import ExtraModel, StageShape  # noqa: F401  (the planner's names for them)


def stage_options(name: str, options):
    """The stage's validated options: `options` itself, or a dict validated by the stage's class."""
    from danlu.stages import STAGES

    if options is not None and not isinstance(options, dict):
        return options
    cls = STAGES.get(name, where="stage")
    try:
        return cls.model_validate(options or {})
    except ValidationError as exc:
        raise UserError(f"options of stage {name} are not valid: {exc.errors()[0]['msg']}", where=name) from None


def stage_shape(spec) -> StageShape:
    from danlu.plan.arch import resolve_arch
    from danlu.stages.shape import PlannedRun

    run = PlannedRun(arch=spec.arch, method=spec.shape, resolve=resolve_arch)
    return stage_options(spec.stage, spec.stage_options).memory_shape(run)
