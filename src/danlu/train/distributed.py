"""`train.distributed` → the arguments transformers' Trainer hands to Accelerate's plugins.

  none | ddp   PyTorch DDP whenever several processes are launched (nothing to configure)
  fsdp         FSDP2 (`fully_shard`), one unit per decoder layer, full state dict on save
  zero1-3      DeepSpeed ZeRO stage 1/2/3; danlu writes the DeepSpeed config ("auto" values are
               filled by transformers from the TrainingArguments, so batch, accumulation,
               clipping and precision always agree with the danlu config)

danlu never runs a parallelism of its own: these dicts are all it contributes. `check` refuses
combinations that cannot work, at config time, with the reason and the fix."""

from __future__ import annotations

import importlib.util
import os

from danlu.errors import ConfigError

ZERO_STAGES = {"zero1": 1, "zero2": 2, "zero3": 3}
# stages whose trainer keeps trainable modules outside the model the Trainer wraps
REPLICA_ONLY_STAGES = {"ppo": "its value head sits outside the wrapped policy and is averaged by hand"}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside a process started by torchrun / accelerate launch / srun+torchrun."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def deepspeed_config(stage: int, offload: str = "none") -> dict:
    """A DeepSpeed config for ZeRO `stage`. "auto" entries are set by transformers from the
    TrainingArguments (micro batch, accumulation, clipping, bf16/fp16)."""
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if stage >= 2:
        zero.update(allgather_partitions=True, reduce_scatter=True, allgather_bucket_size=5e8)
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_max_live_parameters=1e9, stage3_max_reuse_distance=1e9,
                    stage3_gather_16bit_weights_on_model_save=True)  # the final model/ is one normal folder
    if offload in ("optimizer", "params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload == "params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # the Trainer's AdamW / 8-bit optimizers, LoRA+ groups
        "wall_clock_breakdown": False,
    }


def fsdp_config(offload: str = "none", activation_checkpointing: bool = False) -> dict:
    """FSDP2 settings for TrainingArguments.fsdp_config. The wrap policy wraps each decoder
    layer (the model's `_no_split_modules`); PEFT models get their adapters wrapped too."""
    return {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": True,
        "state_dict_type": "FULL_STATE_DICT",  # checkpoints and the artefact gather to rank 0
        "cpu_ram_efficient_loading": False,
        "cpu_offload": offload != "none",
        "activation_checkpointing": activation_checkpointing,
    }


def training_kwargs(train) -> dict:
    """The TrainingArguments entries for `train.distributed` (and offload, checkpointing)."""
    kind = train.distributed
    out: dict = {"ddp_timeout": train.ddp_timeout}
    if kind == "fsdp":
        # FSDP2 recomputes activations itself; the Trainer refuses both at once
        out.update(fsdp="full_shard auto_wrap", fsdp_config=fsdp_config(train.offload, train.gradient_checkpointing),
                   gradient_checkpointing=False, activation_checkpointing=False)
    elif kind in ZERO_STAGES:
        out["deepspeed"] = deepspeed_config(ZERO_STAGES[kind], train.offload)
    return out


def describe(trainer) -> dict:
    """What the Trainer's Accelerator actually runs (recorded in run_info.json)."""
    acc = trainer.accelerator
    engine = ("deepspeed" if getattr(trainer, "is_deepspeed_enabled", False) else
              f"fsdp{getattr(acc.state.fsdp_plugin, 'fsdp_version', '')}" if getattr(trainer, "is_fsdp_enabled", False)
              else "ddp" if acc.num_processes > 1 else "single process")
    backend = getattr(acc.state, "backend", None) or "none"
    return {"engine": engine, "world_size": acc.num_processes, "backend": str(backend)}


def check(cfg) -> None:
    """Config-time checks of train.distributed against the method, stage and offload."""
    t = cfg.train
    kind, offload = t.distributed, t.offload
    quantize = getattr(cfg.method, "quantize", None)
    if offload != "none" and kind in ("none", "ddp"):
        raise ConfigError(f"offload: {offload} needs a sharding strategy", where="train.offload",
                          hint="set train.distributed: fsdp or zero1/zero2/zero3 (params: zero3 or fsdp)")
    if offload == "params" and kind in ("zero1", "zero2"):
        raise ConfigError(f"DeepSpeed offloads parameters only in ZeRO-3, not {kind}", where="train.offload",
                          hint="use train.distributed: zero3, or train.offload: optimizer")
    if offload == "optimizer" and kind == "fsdp":
        raise ConfigError("FSDP2 offloads parameters, gradients and optimizer state together", where="train.offload",
                          hint="use train.offload: params with fsdp, or zero1/zero2/zero3 for optimizer-only offload")
    if kind in ("fsdp", "zero3") and quantize == "int8":
        raise ConfigError(f"8-bit base weights (method.quantize: int8) cannot be sharded by {kind}",
                          where="method.quantize",
                          hint="use method.quantize: nf4 (QLoRA, shards under fsdp/zero3), or train.distributed: ddp")
    if kind in ZERO_STAGES and quantize and kind != "zero3":
        raise ConfigError(f"QLoRA under DeepSpeed is supported with zero3 only, not {kind}",
                          where="train.distributed", hint="use zero3, fsdp, or ddp with QLoRA")
    if kind in ("fsdp", *ZERO_STAGES) and cfg.stage in REPLICA_ONLY_STAGES:
        raise ConfigError(f"stage {cfg.stage} runs with ddp only: {REPLICA_ONLY_STAGES[cfg.stage]}",
                          where="train.distributed", hint="use train.distributed: ddp (or none)")
    if kind in ZERO_STAGES and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"train.distributed: {kind} needs the deepspeed package", where="train.distributed",
                          hint="pip install deepspeed (on a machine with CUDA), or use fsdp, which needs nothing more")


def check_hardware(cfg) -> None:
    """Run-time checks: what this machine cannot do with the chosen strategy."""
    import torch

    kind = cfg.train.distributed
    if kind in ZERO_STAGES and not torch.cuda.is_available():
        raise ConfigError(
            f"train.distributed: {kind} needs a CUDA GPU: DeepSpeed's CPU accelerator needs Intel's oneCCL "
            "bindings, which this machine lacks", where="train.distributed",
            hint="on CPU use train.distributed: fsdp (sharded) or ddp; keep zero1-3 for GPU machines")
    if kind == "fsdp" and not torch.cuda.is_available():
        # accelerate 1.15 hands its FSDP plugin only to accelerator devices: a CPU run would silently be DDP
        raise ConfigError(
            "train.distributed: fsdp needs GPUs here: Accelerate enables FSDP only on accelerator devices, "
            "so CPU processes would silently run plain DDP", where="train.distributed",
            hint="on CPU use train.distributed: ddp; keep fsdp for GPU machines")
    _check_launcher_agrees(kind)


def _check_launcher_agrees(kind: str) -> None:
    """`accelerate launch --config_file X` sets ACCELERATE_USE_FSDP / _DEEPSPEED; the two must agree."""
    env_kind = ("fsdp" if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" else
                "zero" if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" else None)
    mine = "zero" if kind in ZERO_STAGES else kind if kind == "fsdp" else None
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if env_kind == "zero" and stage and stage.isdigit() and mine == "zero" and int(stage) != ZERO_STAGES[kind]:
        env_kind = f"zero{stage}"
        mine = kind
    if env_kind and env_kind != mine:
        raise ConfigError(
            f"the accelerate launch config asks for {env_kind}, the danlu config for {kind}", where="train.distributed",
            hint=f"set train.distributed to match, or launch with examples/accelerate/{kind if kind != 'none' else 'ddp'}.yaml")
