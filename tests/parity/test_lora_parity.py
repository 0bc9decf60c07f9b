"""danlu's LoRA run equals a hand-written reference: PEFT's LoRA on the same builtin model,
a plain PyTorch loop (hand-padded batch, shifted cross-entropy, AdamW, gradient clipping),
the same seed and the same batch. The loss of each of 10 steps agrees within 1e-5."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.unit.methods.harness import config

STEPS, LR, SEED = 10, 1e-2, 1234


def danlu_losses(cfg) -> tuple[list[float], list[dict]]:
    from danlu.train.runner import build

    ctx, train_ds, _ = build(cfg, run_dir=cfg.output_dir, is_main=False)
    trainer = cfg.stage_options().build_trainer(ctx, train_ds, None)
    ctx.trainer = trainer
    losses = []
    step = trainer.training_step

    def recording_step(*args, **kwargs):
        loss = step(*args, **kwargs)
        losses.append(float(loss.detach()))
        return loss

    trainer.training_step = recording_step  # this test's probe, not danlu's code path
    trainer.train()
    return losses, [train_ds[i] for i in range(len(train_ds))]


def reference_losses(rows: list[dict], pad_id: int) -> list[float]:
    from peft import LoraConfig, get_peft_model

    from danlu.models.load import load_model

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1

    base = load_model("builtin:tiny", dtype=torch.float32)
    torch.manual_seed(SEED)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(STEPS):
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return losses


def test_lora_run_equals_peft_in_a_plain_loop(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = config(tmp_path, {"name": "lora", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0}, lr=LR, steps=STEPS,
                     seed=SEED, max_grad_norm=1.0, weight_decay=0.0, precision="fp32")
        cfg.data.packing = False
        ours, rows = danlu_losses(cfg)
        from danlu.models.load import load_tokenizer

        ref = reference_losses(rows, load_tokenizer("builtin:tiny").pad_token_id)
    finally:
        torch.set_num_threads(threads)
    assert len(ours) == STEPS
    assert ref[-1] < ref[0] * 0.9, ref  # the reference itself learns
    print("max |danlu - reference| over", STEPS, "steps:", max(abs(a - b) for a, b in zip(ours, ref)))
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) < 1e-5, (step, ours, ref)
