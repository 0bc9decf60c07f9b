"""`danlu train`: build (tokenizer, template, data, model, method) → fit (a stage's Trainer) →
save (the artefact), writing everything into one run directory:

  config.yaml        the resolved config (auto values filled in)
  data_report.json   rows read / kept / dropped by reason with file:line, token statistics
  run_info.json      trainable / total parameters, precision, versions, final figures
  metrics.jsonl      one JSON object per logging step
  tensorboard/       TensorBoard event files
  checkpoints/step-N crash-safe checkpoints (complete only with their COMPLETE marker)
  adapter/ | model/  the final artefact
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

import danlu
from danlu.errors import DanluError, TrainingInterrupted, UnsafeFileError, UserError
from danlu.train import checkpoint as ckpt
from danlu.train import chain, distributed, levers
from danlu.train.base_model import load_base

log = logging.getLogger(__name__)
RUN_FILES = ("metrics.jsonl", "data_report.json", "run_info.json", "tensorboard", "checkpoints", "adapter", "model")


@dataclass
class RunResult:
    run_dir: Path
    artefact: Path | None
    info: dict


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def check_data_files(cfg) -> None:
    """A data file that does not exist, said before anything else (output_dir, model loading)."""
    from danlu.data.readers import looks_like_path
    from danlu.errors import DataError

    for key in ("train", "eval"):
        value = getattr(cfg.data, key)
        for source in [value] if isinstance(value, str) else value or []:
            if looks_like_path(source) and not Path(source).expanduser().exists():
                raise DataError(f"data file not found: {source}", where=f"data.{key}",
                                hint="check the path (relative paths start from the folder you run danlu in)")


def prepare_run_dir(cfg, *, resume: bool, overwrite: bool, is_main: bool, dry_run: bool = False) -> Path:
    """The run directory, checked: an earlier run there needs --resume or --overwrite (a dry run
    only reads, so it is never stopped by one)."""
    run_dir = Path(cfg.output_dir)
    has_run = any((run_dir / name).exists() for name in ("checkpoints", "adapter", "model", "metrics.jsonl"))
    overwrite = overwrite or (cfg.overwrite_output_dir and not resume)  # the YAML key never wipes a resumed run
    if dry_run:
        return run_dir
    if has_run and not resume and not overwrite:
        raise UserError(
            f"output_dir {run_dir} already holds a run",
            where="output_dir",
            hint="continue it with --resume, start over with --overwrite or overwrite_output_dir: true (deletes that "
                 "run), or pick another output_dir",
        )
    if is_main:
        if overwrite and has_run:
            for name in RUN_FILES:
                target = run_dir / name
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_leftovers(run_dir)
        for tmp in run_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop logged rows after the checkpoint's step so the curve stays continuous."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r).get("step", 0) <= step]
    path.write_text("".join(r + "\n" for r in kept), encoding="utf-8")


def seed_everything(seed: int, deterministic: bool) -> None:
    from transformers.trainer_utils import enable_full_determinism, set_seed

    enable_full_determinism(seed) if deterministic else set_seed(seed)


def build(cfg, *, run_dir: Path, is_main: bool = True):
    """Tokenizer, template, datasets, model with the method applied: a RunContext."""
    import torch

    from danlu.chat.templates import resolve_template
    from danlu.data.report import write_reports
    from danlu.methods.base import MethodContext, count_parameters
    from danlu.models.load import compute_precision
    from danlu.train.context import ParamCounts, RunContext

    seed_everything(cfg.train.seed, cfg.train.deterministic)  # new parameters (LoRA A, heads) init from this
    stage = cfg.stage_options()
    ctx = RunContext(config=cfg, run_dir=run_dir, is_main=is_main, task=stage.task)
    ctx.precision = compute_precision(cfg.train.precision)
    chain.prepare(cfg, ctx)  # model.adapter: the earlier adapter's method (continue), the chain
    cfg.method.check(cfg)
    stage.check(cfg)
    distributed.check(cfg)
    distributed.check_hardware(cfg)
    levers.check(cfg)
    ctx.tokenizer = stage.load_processor(cfg)  # the tokenizer (image / speech stages: their processor)
    if stage.task == "causal_lm":
        _vision_processor(cfg, ctx)
        ctx.template = resolve_template(ctx.tokenizer, cfg.data.template)
    train_ds, eval_ds = stage.build_datasets(ctx)
    if is_main:
        write_reports(ctx.reports, run_dir / "data_report.json")
    model = load_base(ctx)
    torch.manual_seed(cfg.train.seed)  # new weights (LoRA A, adapters, virtual tokens) are the same every run
    mctx = MethodContext(task=stage.task, seed=cfg.train.seed, model_type=getattr(model.config, "model_type", ""),
                         total_steps=optimizer_steps(cfg, len(train_ds))[0],
                         batch_source=lambda n: first_batches(ctx, train_ds, n))
    model = chain.attach(cfg, ctx, model, mctx)
    if ctx.processor is not None:
        from danlu.models.processor import freeze_vision

        freeze_vision(model, tower=cfg.method.freeze_vision_tower, projector=cfg.method.freeze_projector)
    ctx.model = model
    trainable, total = count_parameters(model)
    lr = cfg.train.learning_rate
    ctx.learning_rate = cfg.method.auto_learning_rate(total) if lr == "auto" else float(lr)
    ctx.params = ParamCounts(trainable, total)
    log.info("trainable params: %s / %s (%.4f%%)", f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1))
    return ctx, train_ds, eval_ds


def _vision_processor(cfg, ctx) -> None:
    """A vision-language model: its processor in ctx.processor (images in the data), its chat
    template on the tokenizer when only the processor carries one."""
    from danlu.models.load import is_vision_language, resolve_model_path
    from danlu.models.processor import load_processor

    if not is_vision_language(cfg.model.name_or_path):
        return
    ctx.processor = load_processor(resolve_model_path(cfg.model.name_or_path))
    if not getattr(ctx.tokenizer, "chat_template", None) and getattr(ctx.processor, "chat_template", None):
        ctx.tokenizer.chat_template = ctx.processor.chat_template
    log.info("vision-language model: images go through %s", type(ctx.processor).__name__)


def first_batches(ctx, dataset, n: int) -> list[dict]:
    """The first `n` micro-batches of the tokenised training set, padded (no packing: a
    data-aware initialisation reads plain rows), for a method that looks at data at set-up."""
    from danlu.data.collate import PaddingCollator

    size = ctx.config.train.batch_size
    rows = [dataset[i] for i in range(min(len(dataset), n * size))]
    collate = PaddingCollator(ctx.tokenizer.pad_token_id)
    if ctx.processor is not None:  # vision-language: the batches carry their images
        from danlu.data.vlm import VlmCollator

        collate = VlmCollator(ctx.tokenizer.pad_token_id)
    return [collate(rows[i:i + size]) for i in range(0, len(rows), size)]


def resolved_config(cfg, ctx) -> dict:
    data = cfg.to_yaml_dict()
    data["train"]["learning_rate"] = ctx.learning_rate
    if data["method"].get("r") == "auto":
        data["method"]["r"] = cfg.method.rank
    return data


def optimizer_steps(cfg, n_samples: int) -> tuple[int, int, int]:
    """(optimizer steps of the run, samples per step, steps per epoch)."""
    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = t.batch_size * t.grad_accum * world
    steps_per_epoch = max(1, -(-n_samples // per_step))
    steps = t.max_steps if t.max_steps > 0 else int(steps_per_epoch * t.epochs + 0.999)
    return steps, per_step, steps_per_epoch


def plan_summary(cfg, ctx, train_ds) -> dict:
    steps, per_step, steps_per_epoch = optimizer_steps(cfg, len(train_ds))
    report = ctx.reports[0].to_dict() if ctx.reports else {}
    tokens = report.get("tokens", {})
    return {
        "samples": len(train_ds),
        "samples_per_step": per_step,
        "optimizer_steps": steps,
        "epochs": round(steps / steps_per_epoch, 3),
        "tokens_per_epoch": tokens.get("total"),
        "label_tokens_per_epoch": tokens.get("label_tokens"),
        "learning_rate": ctx.learning_rate,
        "precision": ctx.precision,
        **(ctx.params.as_dict() if ctx.params else {}),
        **({"adapter_chain": ctx.chain.links} if ctx.chain is not None else {}),
    }


def run_training(cfg, *, resume: bool = False, overwrite: bool = False, dry_run: bool = False,
                 strict_memory: bool = False, callbacks: list | None = None) -> RunResult:
    from danlu.plan.preflight import check_memory, peak_for_data

    is_main = rank() == 0
    cfg.method.check(cfg)  # a bad combination of sections first (checked again by build),
    cfg.stage_options().check(cfg)
    check_data_files(cfg)  # then a missing data file, before the output_dir and anything large
    predicted = check_memory(cfg, strict=strict_memory)  # before anything large is loaded
    resume_mode = "auto" if resume else cfg.train.resume
    run_dir = prepare_run_dir(cfg, resume=resume_mode != "never", overwrite=overwrite, is_main=is_main,
                              dry_run=dry_run)
    ctx, train_ds, eval_ds = build(cfg, run_dir=run_dir, is_main=is_main and not dry_run)
    plan = plan_summary(cfg, ctx, train_ds)
    if predicted is not None:  # refined with the tokenised data's real lengths (danlu.plan.batches)
        plan["predicted_peak_bytes"] = peak_for_data(cfg, train_ds) or predicted.peak_bytes
    if dry_run:
        return RunResult(run_dir, None, {"plan": plan, "data": [r.to_dict() for r in ctx.reports]})
    info = {"danlu_version": danlu.__version__, "method": cfg.method.name, "stage": cfg.stage, **plan,
            "versions": _versions()}
    if is_main:
        (run_dir / "config.yaml").write_text(
            yaml.safe_dump(resolved_config(cfg, ctx), allow_unicode=True, sort_keys=False), encoding="utf-8")
        write_json(run_dir / "run_info.json", info)
    resume_from = ckpt.resolve_resume(run_dir, resume_mode)
    if resume_from is not None:
        cfg.method.check_resume()
        log.info("resuming from %s", resume_from)
        if is_main:
            truncate_metrics(run_dir, ckpt.step_of(resume_from))
    elif resume_mode == "auto":
        log.info("no complete checkpoint in %s; starting from the beginning", run_dir)
    trainer = cfg.stage_options().build_trainer(ctx, train_ds, eval_ds)
    for callback in callbacks or []:  # danlu sweep's pruning callback
        trainer.add_callback(callback)
    ctx.trainer = trainer
    if ctx.levers is not None:
        info["levers"] = ctx.levers
    info["distributed"] = distributed.describe(trainer)
    if info["distributed"]["world_size"] > 1 or cfg.train.distributed != "none":
        log.info("distributed: %(engine)s over %(world_size)d process(es), backend %(backend)s", info["distributed"])
    t0, rss_before = time.perf_counter(), peak_memory()["rss_max"]
    try:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except Exception as exc:
        _raise_friendly(exc, resume_from)
        raise
    _record_liger(info, trainer)
    if ctx.stopper.signal_name:
        latest = ckpt.latest_good_checkpoint(run_dir)
        raise TrainingInterrupted(
            f"stopped by {ctx.stopper.signal_name} at step {trainer.state.global_step}; "
            f"checkpoint saved: {latest}. Resume with: danlu train <config> --resume "
            f"(or train.resume: auto)"
        )
    final = cfg.stage_options().after_training(ctx, trainer)
    if final:
        log.info("held-out: %s", ", ".join(f"{k} {v}" for k, v in final.items()))
    artefact = _save(ctx, trainer)
    info.update(**final)
    info.update(
        train_runtime_s=round(time.perf_counter() - t0, 2),
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        loss_tokens=getattr(trainer, "loss_tokens", None),
        skipped_steps=getattr(trainer, "skipped_steps", 0),
        artefact=str(artefact),
        peak_memory={**peak_memory(), "rss_max_before_train": rss_before},
    )
    if is_main:
        write_json(run_dir / "run_info.json", info)
    return RunResult(run_dir, artefact, info)


def _record_liger(info: dict, trainer) -> None:
    """How many modules run Liger kernels (applied by the Trainer when training starts)."""
    if not (info.get("levers") or {}).get("liger_kernel"):
        return
    n = levers.count_liger_modules(trainer.model)
    info["levers"]["liger_modules"] = n
    if n == 0:
        log.warning("train.liger_kernel is on but Liger has no kernels for model type %s; nothing was swapped",
                    getattr(getattr(trainer.model, "config", None), "model_type", "?"))


def _save(ctx, trainer) -> Path:
    from danlu.train.artefact import save_artefact

    return save_artefact(ctx, trainer)


def _raise_friendly(exc: Exception, resume_from) -> None:
    import pickle

    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        raise UnsafeFileError(
            f"a file in {resume_from} holds Python objects that would run code when loaded; refused",
            hint="delete that checkpoint (or restore it from a trusted copy) and resume again",
        ) from None
    if isinstance(exc, DanluError):
        return
    if distributed.world_size() > 1 and any(k in text for k in ("Connection reset by peer", "Connection closed by peer",
                                                                   "NCCL error", "Timed out")):
        raise DanluError(f"another training process stopped or stopped answering ({text.splitlines()[0][:160]}); "
                         "this one stops too. Resume with --resume once every node is back") from None


def peak_memory() -> dict:
    """Peak RSS of this process (bytes) and, on GPU, torch's peak allocated/reserved memory.
    In run_info, `rss_max_before_train` is the peak when training began: the difference is what
    training itself added (gradients, optimiser state, activations) on CPU."""
    import resource

    import torch

    out = {"rss_max": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out.update(cuda_max_allocated=torch.cuda.max_memory_allocated(),
                   cuda_max_reserved=torch.cuda.max_memory_reserved())
    return out


def _versions() -> dict:
    import peft
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "trl": trl.__version__}
