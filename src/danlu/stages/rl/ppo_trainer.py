"""danlu's PPO trainer (TRL 1.16 ships none): transformers' Trainer with DanluTrainerMixin, so
PPO runs keep the run-directory contract (crash-safe checkpoints, metrics.jsonl, progress bar,
TensorBoard, the artefact of the method).

One optimizer step = one PPO update on the current rollout (batch_size × grad_accum prompts per
process). A rollout is sampled at the first of every `num_ppo_epochs` steps and reused by the
next ones (the sampler repeats each batch of prompts that many times), so the ratio π/π_old
moves away from 1 and the clipping does its work:

  rollout   sample answers → log π_old, V_old, log π_ref → score → per-token rewards → GAE
  update    log π, V on the same tokens → clipped policy loss + vf_coef · clipped value loss

The value head is a small fp32 layer beside the policy (not inside the artefact): it is saved in
each checkpoint as value_head.safetensors and restored on resume."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from danlu.stages.rl import ppo_core as core
from danlu.stages.rl.policy import Reference, ValueHead, answer_forward, hidden_size, sample_answers
from danlu.train.trainer import DanluTrainerMixin

log = logging.getLogger(__name__)
VALUE_HEAD_FILE = "value_head.safetensors"
RESERVED_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state"}  # row fields that may not shadow these


class PromptCollator:
    """Left-pads prompt ids; keeps the PromptItems (messages and extra fields for the rewards)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items):
        width = max(len(it.input_ids) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it.input_ids)
            ids[row, width - n:] = torch.tensor(it.input_ids)
            mask[row, width - n:] = 1
        return {"input_ids": ids, "attention_mask": mask, "prompts": list(items)}


class _ValueHeadSync(TrainerCallback):
    """Under DDP the value head sits outside the wrapped model: average its gradients by hand."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if args.world_size > 1 and torch.distributed.is_initialized():
            for p in self.trainer.value_head.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= args.world_size


class PPOTrainer(DanluTrainerMixin, Trainer):
    """PPO on the policy `model`; `ppo` is the stage's options, `rewards` the reward callables."""

    danlu_method = None  # the run's method (set by build_ppo_trainer before construction)

    def __init__(self, *args, ppo, rewards, reward_weights, stop_ids, **kwargs):
        super().__init__(*args, **kwargs)
        self.ppo, self.rewards, self.stop_ids = ppo, rewards, stop_ids
        self.reward_weights = torch.tensor(reward_weights, dtype=torch.float32)
        self.reward_names = [getattr(f, "__name__", f"reward_{i}") for i, f in enumerate(rewards)]
        policy = self.model
        for module in policy.modules():  # dropout would make log π differ between rollout and update
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        self.value_head = ValueHead(hidden_size(policy)).to(self.args.device)
        self.reference = Reference(policy)
        from danlu.train.loss import accepts_logits_to_keep

        method = self.danlu_method
        self.keep_logits = accepts_logits_to_keep(policy) and (method is None or method.supports_logits_to_keep)
        self._buffer: list = [None] * self.args.gradient_accumulation_steps
        self._micro = 0
        self._metrics = defaultdict(list)
        self.model_accepts_loss_kwargs = False
        self.add_callback(_ValueHeadSync(self))

    # ---- data: each batch of prompts comes num_ppo_epochs times in a row --------------------
    def _get_train_sampler(self, train_dataset=None):
        from trl.trainer.utils import RepeatSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        per_rollout = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return RepeatSampler(dataset, mini_repeat_count=1, batch_size=per_rollout,
                             repeat_count=self.ppo.num_ppo_epochs, shuffle=True, seed=self.args.seed)

    # ---- optimizer: the value head trains with the policy ------------------------------------
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if not any(p is self.value_head.summary.weight for g in optimizer.param_groups for p in g["params"]):
            optimizer.add_param_group({"params": list(self.value_head.parameters()), "weight_decay": 0.0,
                                       "lr": self.args.learning_rate})
        return optimizer

    def take_bad_step_flag(self) -> bool:
        bad = super().take_bad_step_flag()
        if bad:
            for p in self.value_head.parameters():
                p.grad = None
        return bad

    # ---- rollout ----------------------------------------------------------------------------
    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        if not self.model.training:
            return inputs
        slot = self._micro % len(self._buffer)
        self._micro += 1
        if self.state.global_step % self.ppo.num_ppo_epochs == 0 or self._buffer[slot] is None:
            self._buffer[slot] = self.rollout(inputs)
        return self._buffer[slot]

    def score(self, prompts, answers_text: list[str], answer_ids: list[list[int]]) -> tuple[torch.Tensor, dict]:
        """Weighted sum of every reward → (B,) scores and each reward's mean."""
        messages = [p.messages for p in prompts]
        completions = [[{"role": "assistant", "content": t}] for t in answers_text]
        extra_keys = set.intersection(*(set(p.extra) for p in prompts)) if prompts else set()
        kwargs = {k: [p.extra[k] for p in prompts] for k in extra_keys - RESERVED_KWARGS}
        columns, means = [], {}
        for name, fn in zip(self.reward_names, self.rewards):
            values = fn(prompts=messages, completions=completions, completion_ids=answer_ids,
                        trainer_state=self.state, **kwargs)
            col = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)
            columns.append(col)
            means[f"rewards/{name}"] = torch.nanmean(col).item()
        table = torch.stack(columns, dim=1)  # (B, n_rewards)
        total = (table * self.reward_weights.unsqueeze(0)).nansum(dim=1)
        return total, means

    def sample(self, inputs, *, greedy: bool = False):
        policy = self.accelerator.unwrap_model(self.model)
        answers, mask = sample_answers(
            policy, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=self.ppo.max_completion_length,
            temperature=self.ppo.temperature, stop_ids=self.stop_ids, pad_id=self.processing_class.pad_token_id,
            greedy=greedy)
        tok = self.processing_class
        ids = [row[m.bool()].tolist() for row, m in zip(answers, mask)]
        texts = [tok.decode([t for t in seq if t not in self.stop_ids], skip_special_tokens=True) for seq in ids]
        scores, means = self.score(inputs["prompts"], texts, ids)
        return answers, mask, scores.to(answers.device), means, texts

    @torch.no_grad()
    def rollout(self, inputs) -> dict:
        ppo = self.ppo
        answers, mask, scores, means, _ = self.sample(inputs)
        seq = torch.cat([inputs["input_ids"], answers], dim=1)
        attn = torch.cat([inputs["attention_mask"], mask], dim=1)
        width = inputs["input_ids"].shape[1]
        policy = self.accelerator.unwrap_model(self.model)
        logp, values, _ = answer_forward(policy, seq, attn, width, ppo.temperature, value_head=self.value_head,
                                         keep_logits=self.keep_logits)
        ref_logp = self.reference.logprobs(policy, seq, attn, width, ppo.temperature, keep_logits=self.keep_logits)
        stops = torch.tensor(self.stop_ids, device=answers.device)
        finished = (torch.isin(answers, stops) & mask.bool()).any(1)  # (B,) ended by a stop token
        if ppo.missing_eos_penalty is not None:
            scores = scores - ppo.missing_eos_penalty * (~finished).float()
        kl = core.kl_per_token(logp, ref_logp, ppo.kl_estimator) * mask
        rewards = core.token_rewards(scores, kl, mask, ppo.kl_coef)
        advantages, returns = core.gae(rewards, values, mask, ppo.gamma, ppo.lam)
        advantages = core.masked_whiten(advantages, mask)
        self.count_loss_tokens(mask.sum())
        self._record(reward=scores.mean().item(), kl=kl.sum(1).mean().item(), score_std=scores.std().item()
                     if len(scores) > 1 else 0.0, completion_length=mask.sum(1).float().mean().item(),
                     finished=finished.float().mean().item(), value=core.masked_mean(values, mask).item(), **means)
        return {"input_ids": seq, "attention_mask": attn, "prompt_width": width, "mask": mask, "old_logp": logp,
                "old_values": values, "advantages": advantages, "returns": returns}

    # ---- update -----------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ppo, mask = self.ppo, inputs["mask"]
        logp, values, entropy = answer_forward(model, inputs["input_ids"], inputs["attention_mask"],
                                               inputs["prompt_width"], ppo.temperature, value_head=self.value_head,
                                               keep_logits=self.keep_logits, with_entropy=True)
        pg_loss, pg_stats = core.policy_loss(logp, inputs["old_logp"], inputs["advantages"], mask, ppo.cliprange)
        vf_loss, vf_stats = core.value_loss(values, inputs["old_values"], inputs["returns"], mask,
                                            ppo.cliprange_value)
        loss = pg_loss + ppo.vf_coef * vf_loss
        self._record(pg_loss=pg_loss.item(), vf_loss=vf_loss.item(), pg_clipfrac=pg_stats["clipfrac"].item(),
                     vf_clipfrac=vf_stats["clipfrac"].item(), approx_kl=pg_stats["approx_kl"].item(),
                     entropy=core.masked_mean(entropy, mask).item())
        return (loss, None) if return_outputs else loss

    # ---- evaluation: mean reward of greedy answers to held-out prompts ----------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        loader = self.get_eval_dataloader(eval_dataset)
        scores, lengths = [], []
        for batch in loader:
            batch = super()._prepare_inputs(batch)
            _, mask, batch_scores, _, _ = self.sample(batch, greedy=True)
            scores += batch_scores.tolist()
            lengths += mask.sum(1).tolist()
        metrics = {f"{metric_key_prefix}_reward": sum(scores) / max(len(scores), 1),
                   f"{metric_key_prefix}_completion_length": sum(lengths) / max(len(lengths), 1)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ---- logging and checkpoints ------------------------------------------------------------
    def _record(self, **values) -> None:
        for key, value in values.items():
            self._metrics[key].append(value)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            for key, values in self._metrics.items():
                finite = [v for v in values if v == v]
                if finite:
                    logs[key] = round(sum(finite) / len(finite), 6)
            self._metrics.clear()
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        if _internal_call and output_dir and self.args.should_save:  # checkpoints only, not the artefact
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.value_head.state_dict().items()},
                      str(Path(output_dir) / VALUE_HEAD_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / VALUE_HEAD_FILE
        if path.is_file():
            from safetensors.torch import load_file

            self.value_head.load_state_dict(load_file(str(path), device=str(self.args.device)))
        else:
            log.warning("%s has no %s; the value head starts again from zero", resume_from_checkpoint,
                        VALUE_HEAD_FILE)


def build_ppo_trainer(ctx, stage, train_items, eval_items) -> PPOTrainer:
    from danlu.errors import DataError
    from danlu.train.args import training_arguments
    from danlu.train.callbacks import standard_callbacks
    from danlu.train.trainer import quiet

    args = training_arguments(ctx, has_eval=bool(eval_items))
    per_rollout = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if len(train_items) < per_rollout:
        raise DataError(
            f"{len(train_items)} training prompts, fewer than one rollout needs "
            f"(train.batch_size × train.grad_accum × processes = {per_rollout})",
            where="data.train", hint="add prompts, or lower train.batch_size / train.grad_accum")
    rewards, weights = stage.rewards(ctx)
    trainer_cls = type("PPOTrainer", (PPOTrainer,), {"danlu_method": ctx.config.method})
    trainer = trainer_cls(
        model=ctx.model,
        args=args,
        train_dataset=train_items,
        eval_dataset=eval_items or None,
        data_collator=PromptCollator(ctx.tokenizer.pad_token_id),
        processing_class=ctx.tokenizer,
        callbacks=standard_callbacks(ctx),
        ppo=stage,
        rewards=rewards,
        reward_weights=weights,
        stop_ids=ctx.template.stop_token_ids(),
    )
    trainer.danlu = ctx
    quiet(trainer)
    return trainer
