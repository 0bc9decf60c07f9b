"""The memory check `danlu train` runs before it loads anything large: the planner's predicted
peak against the device's memory (the GPU's, or the RAM this machine has free). Over it: a
warning, or with --strict-memory a stop (exit 2) that says what would fit."""

from __future__ import annotations

import logging
import os

from danlu.errors import UserError

log = logging.getLogger(__name__)


def check_memory(cfg, *, strict: bool = False):
    """The MemoryEstimate (or None when the model's shape is unknown); warns or raises."""
    from danlu.plan.estimate import estimate_memory
    from danlu.plan.hardware import this_machine
    from danlu.plan.spec import spec_from_config
    from danlu.plan.terms import GiB

    try:
        device = this_machine()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        spec = spec_from_config(cfg, device=device.kind, gpus=world if device.kind == "cuda" else 1)
        est = estimate_memory(spec)
    except UserError as exc:
        log.info("memory check skipped: %s", str(exc).splitlines()[0])
        return None
    available = device.memory_bytes
    if device.kind == "cpu":
        import psutil

        procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        need = est.device_need_bytes * procs
        available += psutil.Process().memory_info().rss  # this process is already counted as used
    else:
        need = est.device_need_bytes
    where = "process RSS" if device.kind == "cpu" else "GPU memory"
    if need <= available:
        log.info("predicted peak memory %.2f GiB (%s) of %.2f GiB available", need / GiB, where, available / GiB)
        return est
    msg = (f"predicted peak memory {need / GiB:.2f} GiB ({where}, at {est.peak_phase}) exceeds the "
           f"{available / GiB:.2f} GiB of {device.label or device.name}")
    hint = (f"see `danlu plan <config>{' --gpu ' + device.name if device.kind == 'cuda' else ''}` for the terms and "
            "settings that fit (gradient checkpointing, smaller train.batch_size or max_length, qlora)")
    if strict:
        raise UserError(msg, where="--strict-memory", hint=hint)
    log.warning("%s; the run may run out of memory (%s)", msg, hint)
    return est


def peak_for_data(cfg, train_ds) -> int | None:
    """The predicted peak once the training set is tokenised: its real sample lengths set the
    largest micro-batch (danlu.plan.batches) instead of batch_size × max_length. None when
    the model's shape is unknown or the dataset does not give its lengths (preference pairs)."""
    from danlu.plan.estimate import estimate_memory
    from danlu.plan.hardware import this_machine
    from danlu.plan.spec import spec_from_config

    try:
        lengths = list(train_ds.lengths)  # danlu's TokenizedDataset (SFT, pretraining)
        device = this_machine()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        spec = spec_from_config(cfg, device=device.kind, gpus=world if device.kind == "cuda" else 1)
    except (UserError, AttributeError, TypeError, ValueError) as exc:
        log.info("data-aware memory estimate skipped: %s", str(exc).splitlines()[0])
        return None
    spec.dataset_tokens, spec.dataset_samples, spec.extra["lengths"] = sum(lengths), len(lengths), lengths
    return estimate_memory(spec).peak_bytes
