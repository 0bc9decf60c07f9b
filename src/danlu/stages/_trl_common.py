"""What every stage run by a TRL trainer shares: the reference model (the base with the adapter
switched off, or a frozen copy for full fine-tuning), fp32 adapters on machines that train in
fp32, tokens counted for the progress bar, and the danlu wiring (callbacks, checkpoints)."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def reference_is_base(ctx) -> bool:
    """True when the adapter starts as a no-op, so switching it off gives the starting model.
    PiSSA / OLoRA move the principal part of each weight into the adapter, and a continued adapter
    (model.adapter_mode: continue) starts as the earlier run's policy: the base alone is not the
    starting model, and TRL's frozen copy of the initial adapter ("ref") stays the reference."""
    from danlu.methods.lora import MUTATING_INITS

    if ctx.chain is not None and ctx.chain.continued:
        return False
    return getattr(ctx.config.method, "init", "default") not in MUTATING_INITS


def reference_model(ctx):
    """None for an adapter (the reference is the base with the adapter disabled, no second copy
    in memory); a frozen second copy of the base for methods that change the base's weights."""
    if is_peft(ctx.model):
        return None
    from danlu.methods.stack import merge_below
    from danlu.train.base_model import load_base

    log.info("method %s trains the base weights: loading a frozen reference copy", ctx.config.method.name)
    ref = merge_below(load_base(ctx), ctx.chain.below if ctx.chain else [])  # stacked: base + earlier adapters
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class CountTokens:
    """Tokens seen in training (prompt + answers) for metrics.jsonl's tokens and tokens_per_s."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.count_loss_tokens(sum(v.sum() for k, v in inputs.items()
                                       if k.endswith("attention_mask") and not k.startswith("prompt")
                                       and torch.is_tensor(v)))
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)


def keep_fp32_adapters(model) -> None:
    """TRL casts QLoRA adapters to bf16 (the QLoRA paper's choice, for a base stored in bf16 on a
    GPU). Where the frozen base is stored in fp32 (every CPU run: there autocast does the bf16
    compute on CPUs with native bf16), the adapters stay fp32 too: the master copy AdamW updates,
    and the dtype of the activations they meet outside autocast (held-out scoring, generation)."""
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()}
    if frozen and frozen <= {torch.bfloat16, torch.float16}:
        return
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()


def drop_ref_adapter(trainer, ctx) -> None:
    """TRL copies a PeftModel's adapter into a frozen "ref" adapter. A fresh LoRA adapter is a
    no-op, so the base with the adapter disabled is the same reference without the copy."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft(model) and "ref" in model.peft_config and reference_is_base(ctx):
        model.delete_adapter("ref")
        model.set_adapter("default")


def finish(trainer, ctx):
    """danlu's wiring of a TRL trainer built by a stage."""
    from danlu.train.trainer import quiet

    trainer.danlu = ctx
    quiet(trainer)
    keep_fp32_adapters(trainer.model)
    drop_ref_adapter(trainer, ctx)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return trainer


def trl_arguments(ctx, config_cls, *, has_eval: bool, **extra):
    """TrainingArguments of a TRL config class, with TRL's own tokenisation switched off."""
    from danlu.train.args import training_arguments

    extra.setdefault("max_length", ctx.config.train.max_length)
    extra.setdefault("gradient_checkpointing", ctx.config.train.gradient_checkpointing)
    extra.setdefault("dataset_num_proc", None)
    return training_arguments(ctx, has_eval=has_eval, cls=config_cls, **extra)


def legacy_pair_features(row: dict) -> dict:
    """The columns TRL's CPO / ORPO trainers read, built from danlu's ids (prompt + answer, the
    prompt masked with -100 in the labels)."""
    prompt = list(row["prompt_ids"])
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for name in ("chosen", "rejected"):
        answer = list(row[f"{name}_ids"])
        out[f"{name}_input_ids"] = prompt + answer
        out[f"{name}_attention_mask"] = [1] * (len(prompt) + len(answer))
        out[f"{name}_labels"] = [-100] * len(prompt) + answer
    return out


def drop_ref_after_training(trainer) -> None:
    """A kept "ref" adapter (PiSSA / OLoRA) is not part of the result: remove it before saving."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft(model) and "ref" in model.peft_config:
        model.delete_adapter("ref")
