"""Registry of training stages: `stage:` → the stage's options class (its strategy)."""

from danlu.registry import Registry

STAGES: Registry = Registry("stage")
register_stage = STAGES.register
