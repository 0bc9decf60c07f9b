"""RunContext: what the runner has built so far, handed to methods, stages and callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danlu.data.formats import FormatOptions
from danlu.train.callbacks import GracefulStop


@dataclass
class RunContext:
    config: Any  # RunConfig
    run_dir: Path
    tokenizer: Any = None
    template: Any = None  # ChatTemplate
    model: Any = None
    trainer: Any = None
    precision: str = "fp32"
    learning_rate: float = 1e-4
    is_main: bool = True
    reports: list = field(default_factory=list)
    stopper: GracefulStop = field(default_factory=GracefulStop)
    extra: dict = field(default_factory=dict)  # stage-specific objects (reference model, teacher ...)

    def format_options(self) -> FormatOptions:
        data = self.config.data
        return FormatOptions(system=data.system, placeholders=dict(getattr(data, "placeholders", None) or {}),
                             dataset_dir=getattr(data, "dataset_dir", "data"))
