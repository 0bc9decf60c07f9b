"""What `danlu plan` is asked about: a RunConfig from CONFIG.yaml (+ dotted overrides), from
flags alone (`--model ... --method qlora --max-length 2048`), or both (flags win), validated by
the same schema as `danlu train`; and the device (--gpu NAME, --vram GB, or this machine)."""

from __future__ import annotations

from pathlib import Path

from danlu.errors import UserError

NO_DATA = "<no data>"
# flag → dotted config key
FLAG_KEYS = {
    "model": "model.name_or_path", "method": "method.name", "stage": "stage", "max_length": "train.max_length",
    "batch_size": "train.batch_size", "grad_accum": "train.grad_accum", "epochs": "train.epochs",
    "max_steps": "train.max_steps", "optimizer": "train.optimizer", "precision": "train.precision",
    "gradient_checkpointing": "train.gradient_checkpointing", "data": "data.train", "rank": "method.r",
    "packing": "data.packing", "attn_implementation": "model.attn_implementation",
}


def build_config(config: str | None, overrides: list[str], flags: dict):
    """A validated RunConfig. Without CONFIG, --model is required and data is optional."""
    from danlu.config.load import apply_overrides, load_config_dict, read_yaml

    if config:
        data, lines = read_yaml(config)
    elif not flags.get("model"):
        raise UserError("give a CONFIG.yaml or --model (e.g. danlu plan --model Qwen/Qwen2.5-7B-Instruct "
                        "--method qlora --max-length 2048 --batch-size 4)", where="danlu plan")
    else:
        data, lines = {"model": {}, "data": {"train": NO_DATA}, "method": {"name": "lora"}}, {}
    items = list(overrides)
    for flag, key in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is None:
            continue
        if flag == "method" and isinstance(data.get("method"), dict) and data["method"].get("name") != value:
            data["method"] = {}  # another method: its own options, not the config's
        items.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    origin = apply_overrides(data, items)
    return load_config_dict(data, source=str(config or "<flags>"), lines=lines, origin=origin)


def has_data(cfg) -> bool:
    files = cfg.data.train if isinstance(cfg.data.train, list) else [cfg.data.train]
    return all(f != NO_DATA and Path(f).exists() for f in files)


def device_from_flags(gpu_name: str | None, vram: float | None):
    from danlu.plan.hardware import custom_gpu, gpu, this_machine

    if gpu_name and vram:
        raise UserError("give --gpu or --vram, not both", where="danlu plan")
    if gpu_name:
        return gpu(gpu_name)
    if vram:
        if vram <= 0:
            raise UserError(f"--vram must be positive, got {vram}", where="--vram")
        return custom_gpu(vram)
    return this_machine()


def spec_for(cfg, device, *, gpus: int, strategy: str, offload: str, loss_chunk: int | None = None):
    from danlu.plan.spec import spec_from_config

    if gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {gpus}", where="--gpus")
    if device.kind == "cpu" and (gpus > 1 or strategy != "ddp" or offload != "none"):
        raise UserError("--gpus, --strategy and --offload need a GPU: add --gpu NAME or --vram GB", where="danlu plan")
    return spec_from_config(cfg, device=device.kind, gpus=gpus, strategy=strategy, offload=offload,
                            loss_chunk=loss_chunk)
