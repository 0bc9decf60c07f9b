"""The final artefact of a run: RUN_DIR/adapter/ (PEFT) or RUN_DIR/model/ (full weights), each
with the tokenizer (chat template included), a generation config whose stop tokens are the
ones the run trained with, and danlu.json (base model, method, stage, template)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import danlu
from danlu.diskspace import guard_save, tensor_bytes
from danlu.files import normal_modes
from danlu.train.chain import copy_stacked

META = "danlu.json"


def artefact_dir(run_dir: Path, method) -> Path:
    return Path(run_dir) / method.artefact


def write_metadata(out: Path, ctx) -> dict:
    cfg = ctx.config
    meta = {
        "danlu_version": danlu.__version__,
        "base_model": cfg.model.name_or_path,
        "revision": cfg.model.revision,
        "trust_remote_code": cfg.model.trust_remote_code,
        "method": cfg.method.model_dump(mode="json"),
        "stage": cfg.stage,
        "task": ctx.task,
        "artefact": cfg.method.artefact,
    }
    if ctx.template is not None:
        meta.update(
            template=ctx.template.source,
            turn_end=ctx.template.turn_end,
            stop_token_ids=ctx.template.stop_token_ids(),
        )
    if getattr(ctx, "processor", None) is not None:
        meta["processor"] = type(ctx.processor).__name__  # vision-language: images go through it
    meta.update(ctx.artefact_meta)
    (out / META).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return meta


def write_generation_config(out: Path, ctx, model) -> None:
    from transformers import GenerationConfig

    if ctx.template is None:
        return
    base = getattr(model, "generation_config", None)
    gen = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    gen.eos_token_id = ctx.template.stop_token_ids()
    gen.pad_token_id = ctx.tokenizer.pad_token_id
    gen.save_pretrained(str(out))


def save_artefact(ctx, trainer) -> Path:
    """Write the artefact into a temporary folder, then rename it into place (rank 0 renames)."""
    run_dir = Path(ctx.run_dir)
    final = artefact_dir(run_dir, ctx.config.method)
    tmp = run_dir / f".tmp-{final.name}"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    with guard_save(final, what=f"the {final.name}", cleanup=tmp,
                    needed_bytes=lambda: tensor_bytes(model, trainable_only=ctx.config.method.artefact == "adapter"),
                    after="The checkpoints are intact: free space, then `danlu train CONFIG --resume` writes it."):
        ctx.config.method.save_final(trainer, tmp)
        if ctx.is_main:
            (tmp / "training_args.bin").unlink(missing_ok=True)
            ctx.tokenizer.save_pretrained(str(tmp))
            if ctx.processor is not None:  # a vision-language model: its processor travels with the artefact
                from danlu.models.processor import save_processor

                save_processor(ctx.processor, tmp)
            write_generation_config(tmp, ctx, model)
            copy_stacked(ctx, tmp)
            write_metadata(tmp, ctx)
    if ctx.is_main:
        normal_modes(tmp)  # safetensors leaves its files 0600
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final
