"""Internals of `stage: distill` (teacher loading, the logit-distillation loss and trainer,
sequence-level data). Import-light like every stage package."""
