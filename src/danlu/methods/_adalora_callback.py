"""AdaLoRA's rank allocation during training (a TrainerCallback)."""

from __future__ import annotations

from transformers import TrainerCallback


class RankAllocation(TrainerCallback):
    """After the optimizer step, before the gradients are cleared: update the importance
    scores and prune ranks (PEFT's `update_and_allocate`)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        tuner = model.base_model
        if any(p.grad is None for n, p in model.named_parameters() if p.requires_grad and "lora_" in n):
            return  # a skipped (NaN) step dropped the gradients: nothing to score
        tuner.update_and_allocate(state.global_step)
