"""RunContext: what the runner has built so far, handed to methods, stages and callbacks. Every
field is named and typed; a stage that needs to keep something between its hooks gets a field
here (no string-keyed bag)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from danlu.chat.images import DEFAULT_MAX_PIXELS
from danlu.data.formats import FormatOptions
from danlu.train.callbacks import GracefulStop

if TYPE_CHECKING:
    import torch.nn as nn
    from transformers import PreTrainedTokenizerBase, Trainer

    from danlu.data.report import DataReport
    from danlu.chat.templates import ChatTemplate
    from danlu.methods.base import Method


class RunConfigView(Protocol):
    """What a run reads of its RunConfig (danlu.config.schema assembles it from the method and
    stage registries, a layer above train/, so it is described here rather than imported)."""

    model: Any  # ModelConfig
    data: Any  # DataConfig
    train: Any  # TrainConfig
    eval: Any  # EvalConfig
    method: Method
    stage: str
    output_dir: str

    def stage_options(self) -> Any: ...


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of the model with the method applied (4-bit packed weights at their logical size)."""

    trainable: int
    total: int

    def as_dict(self) -> dict[str, int | float]:
        """The run_info.json / plan fields."""
        return {"trainable_params": self.trainable, "total_params": self.total,
                "trainable_percent": round(100.0 * self.trainable / max(self.total, 1), 4)}


@dataclass
class RunContext:
    config: RunConfigView
    run_dir: Path
    tokenizer: PreTrainedTokenizerBase | None = None
    template: ChatTemplate | None = None
    processor: Any = None  # a vision-language model's processor (models/processor.py), else None
    model: nn.Module | None = None
    trainer: Trainer | None = None
    precision: str = "fp32"
    learning_rate: float = 1e-4
    is_main: bool = True
    task: str = "causal_lm"  # the model head the stage trains: causal_lm | seq_cls | token_cls
    reports: list[DataReport] = field(default_factory=list)
    stopper: GracefulStop = field(default_factory=GracefulStop)
    params: ParamCounts | None = None  # set once the method is applied
    levers: dict[str, Any] | None = None  # attention / packing / Liger / offload in use (train.levers.describe)
    artefact_meta: dict[str, Any] = field(default_factory=dict)  # stage facts written to danlu_meta.json
    # stage state kept between its hooks
    labels: list[str] | None = None  # classify: the label names, read from the data
    train_rows: Any = None  # classify: the training rows (the majority baseline)
    held_out_before: dict[str, float] = field(default_factory=dict)  # dpo/kto/reward: metrics before training
    teacher: nn.Module | None = None  # distill: the teacher model
    chain: Any = None  # model.adapter: the earlier adapter built on (train.chain.Chain), else None

    def format_options(self) -> FormatOptions:
        data = self.config.data
        return FormatOptions(system=data.system, placeholders=dict(getattr(data, "placeholders", None) or {}),
                             dataset_dir=getattr(data, "dataset_dir", "data"),
                             max_image_pixels=getattr(data, "max_image_pixels", DEFAULT_MAX_PIXELS))
