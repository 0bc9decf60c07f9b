"""RunSpec: everything about a run that sets its memory, time and cost — the model's shape, the
method and stage, the batch, precision, device and parallelism — built from a danlu RunConfig
(the same YAML `danlu train` reads) or from command-line flags."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from danlu import runplan
from danlu.errors import UserError
from danlu.methods.shape import MethodShape
from danlu.plan.arch import Arch, resolve_arch
from danlu.plan.methods import method_shape

STRATEGIES = ("ddp", "fsdp", "zero1", "zero2", "zero3")
OFFLOADS = ("none", "optimizer", "all")


@dataclass
class RunSpec:
    arch: Arch
    method_name: str
    method: Any = None  # the method's options (a danlu Method or a dict)
    stage: str = "sft"
    stage_options: Any = None
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    packing: bool = True
    gradient_checkpointing: bool = False
    offload_activations: bool = False  # train.offload_activations: saved activations in host memory (CUDA)
    liger: bool = False  # Liger's RMSNorm / RoPE / SwiGLU kernels (train.liger_kernel, CUDA)
    optimizer: str = "adamw"
    precision: str = "bf16"  # compute precision, resolved: fp32 | bf16 | fp16
    weight_dtype: str = "auto"  # model.dtype
    attn: str = "sdpa"
    device: str = "cuda"  # cuda | cpu
    gpus: int = 1
    strategy: str = "ddp"
    offload: str = "none"
    loss_chunk: int | None = None  # logits computed in chunks of this many tokens (None: all at once)
    fused_loss: bool = False  # danlu's chunked linear + cross-entropy (train.fused_loss): no logits kept
    epochs: float = 1.0
    max_steps: int = -1
    dataset_tokens: int | None = None  # tokens of the tokenised training set (counted when data is given)
    dataset_samples: int | None = None
    checkpoint_bytes: int | None = None  # size of the weights files (None: read next to the config, or estimated)
    release_memory: bool = True  # CPU: train.release_memory (heap trimmed after every step)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown parallel strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}",
                            where="--strategy")
        if self.offload not in OFFLOADS:
            raise UserError(f"unknown offload {self.offload!r}; choose one of: {', '.join(OFFLOADS)}",
                            where="--offload")
        if self.offload != "none" and not self.strategy.startswith("zero"):
            raise UserError("offloading to CPU needs DeepSpeed ZeRO (--strategy zero2 or zero3)", where="--offload")
        if self.offload == "all" and self.strategy != "zero3":
            raise UserError("offloading parameters needs ZeRO-3 (--strategy zero3)", where="--offload")

    @property
    def shape(self) -> MethodShape:
        cached = self.extra.get("_shape")
        if cached is None:
            cached = self.extra["_shape"] = _vision_frozen(self.arch, method_shape(self.arch, self.method_name,
                                                                                    self.method), self.method)
        return cached

    def with_(self, **changes) -> RunSpec:
        """A copy with some settings changed (the method shape is recomputed if needed)."""
        extra = {k: v for k, v in self.extra.items() if k != "_shape"}
        return replace(self, extra=extra, **changes)


def _vision_frozen(arch: Arch, shape: MethodShape, method) -> MethodShape:
    """A method that trains the base trains the image side only where method.freeze_* say so."""
    if arch.vision is None or not shape.trains_base:
        return shape
    from danlu.plan.vision import frozen_vision_params

    frozen = frozen_vision_params(arch.vision, method)
    note = f"vision-language: {frozen:,} image-side params frozen (method.freeze_vision_tower / freeze_projector)"
    return replace(shape, trainable=max(shape.trainable - frozen, 0), notes=[*shape.notes, note])


def method_name(method) -> str:
    """The canonical method name (LoRA shorthands are LoRA with options set)."""
    return getattr(method, "name", None) or (method.get("name") if isinstance(method, dict) else None) or "lora"


def spec_from_config(cfg, *, device: str, precision: str | None = None, arch: Arch | None = None,
                     **overrides) -> RunSpec:
    """A RunSpec from a validated RunConfig; `precision` is resolved for `device` when not given."""
    t = cfg.train
    arch = arch or resolve_arch(cfg.model.name_or_path)
    method = cfg.method
    prec = precision or resolve_precision(t.precision, device)
    kwargs: dict[str, Any] = dict(
        arch=arch, method_name=method_name(method), method=method, stage=cfg.stage,
        stage_options=cfg.stage_options(), batch_size=t.batch_size, grad_accum=t.grad_accum,
        max_length=t.max_length, packing=runplan.packing_applies(cfg),
        gradient_checkpointing=t.gradient_checkpointing, optimizer=t.optimizer, precision=prec,
        weight_dtype=cfg.model.dtype,
        attn=planned_attention(cfg.model.attn_implementation, device, prec,
                               packing=runplan.packs_rows(cfg, vision=arch.vision is not None)),
        device=device, epochs=t.epochs, max_steps=t.max_steps,
        offload_activations=bool(getattr(t, "offload_activations", False)) and device == "cuda",
        liger=device == "cuda" and planned_liger(cfg), release_memory=getattr(t, "release_memory", True),
    )
    if runplan.fused_loss_applies(cfg, arch.model_type):
        kwargs.update(fused_loss=True, loss_chunk=runplan.loss_chunk(arch.vocab))
    if arch.vision is not None:  # danlu train pads vision-language batches (images ride along)
        kwargs["packing"] = False
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return RunSpec(**kwargs)


def planned_attention(requested: str, device: str, precision: str, packing: bool = False) -> str:
    """model.attn_implementation as `danlu train` resolves it on this machine (danlu.runplan,
    train.levers): auto is flash_attention_2 (varlen packing, no L×L mask) on CUDA with flash-attn
    installed and 16-bit compute; danlu_varlen_sdpa (padding-free packed rows, no mask) for a
    packed causal-LM run on a CPU; else sdpa (packing with a 4D block mask)."""
    resolved = runplan.resolve_attention(requested, precision, lambda: device == "cuda" and runplan.flash_usable(),
                                         packing=packing, cuda=device == "cuda")
    return "sdpa" if resolved == "auto" else resolved


def planned_liger(cfg) -> bool:
    """train.liger_kernel as `danlu train` resolves it here (auto: CUDA and liger-kernel installed)."""
    return runplan.liger_enabled(cfg)


def resolve_precision(requested: str, device: str) -> str:
    """train.precision: auto → bf16 on a GPU (the planner assumes one recent enough); on a CPU
    bf16 with native bf16 matmuls (AMX / AVX512-BF16), else fp32 (as `danlu train` picks)."""
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16"
    from danlu.models.load import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"
