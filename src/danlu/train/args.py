"""RunConfig → transformers TrainingArguments (or a TRL config class, which extends it)."""

from __future__ import annotations

import dataclasses

from transformers import TrainingArguments

from danlu.train import distributed, levers

OPTIMIZERS = {
    "adamw": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "sgd": "sgd",
    "adafactor": "adafactor",
}


def training_arguments(ctx, *, has_eval: bool, cls=TrainingArguments, **extra):
    import torch

    cfg = ctx.config
    on_cpu = not torch.cuda.is_available()
    t, ev = cfg.train, cfg.eval
    eval_strategy = ev.strategy if has_eval else "no"
    if eval_strategy == "steps" and not ev.steps:
        eval_strategy = "epoch"
    kwargs = dict(
        output_dir=str(ctx.run_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=ev.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=ctx.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=OPTIMIZERS[t.optimizer],
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if t.save_steps else "epoch",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # danlu rotates its own checkpoints (never before a new one is complete)
        eval_strategy=eval_strategy,
        eval_steps=ev.steps,
        seed=t.seed,
        data_seed=t.seed,
        full_determinism=t.deterministic,
        bf16=ctx.precision == "bf16",
        fp16=ctx.precision == "fp16",
        gradient_checkpointing=t.gradient_checkpointing,
        torch_compile=t.compile,
        gradient_checkpointing_kwargs=levers.checkpointing_kwargs(cfg),
        report_to=[r for r in t.report_to if r != "tensorboard"] or "none",
        remove_unused_columns=False,
        dataloader_num_workers=t.num_workers,
        dataloader_pin_memory=not on_cpu,
        use_cpu=on_cpu,  # on CPU accelerate runs several processes (gloo) only when told it is on CPU
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no",
        save_only_model=False,
        log_level="warning",
    )
    if t.group_by_length and not cfg.data.packing:  # packing already removes padding
        kwargs["train_sampling_strategy"] = "group_by_length"  # else each config class's own default (KTO: sequential)
    kwargs.update(distributed.training_kwargs(t))  # fsdp_config / deepspeed dict for Accelerate's plugins
    kwargs.update(extra)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})
