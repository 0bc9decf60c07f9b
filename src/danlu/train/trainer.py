"""danlu's additions to transformers' Trainer, mixed into every stage's trainer (ours or TRL's):
crash-safe checkpoints (checkpoint.py), NaN/inf steps skipped instead of applied, the method's
own optimizer groups (LoRA+), no pickle in any artefact. `CausalLMTrainer` adds the SFT loss."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import Trainer

from danlu import faults
from danlu.errors import DanluError
from danlu.train import checkpoint as ckpt
from danlu.train.fused_ce import OutputCapture, fused_head_supported
from danlu.train.loss import accepts_logits_to_keep, causal_lm_loss

log = logging.getLogger(__name__)


class NonFiniteWeights(DanluError):
    """Trainable weights hold NaN/inf: no checkpoint is written (the last good one stays)."""


class DanluTrainerMixin:
    """Set `self.danlu` (a RunContext) after construction."""

    danlu = None
    _bad_loss = None  # device flag: a non-finite loss in the current optimizer step
    bad_steps_in_row = 0
    skipped_steps = 0
    _tokens_host = 0  # label tokens trained on (this process), already on the host
    _tokens_dev = None  # ... and still on the device: added up without a host sync per micro-batch

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from danlu.train.callbacks import NonFiniteGuard

        self.add_callback(NonFiniteGuard(self))

    # ---- loss-bearing tokens: counted in the hot loop, read (one sync) when metrics are logged --
    def count_loss_tokens(self, n) -> None:
        if torch.is_tensor(n):
            n = n.detach()
            self._tokens_dev = n if self._tokens_dev is None else self._tokens_dev + n
        else:
            self._tokens_host += int(n)

    @property
    def loss_tokens(self) -> int:
        if self._tokens_dev is not None:
            self._tokens_host += int(self._tokens_dev)
            self._tokens_dev = None
        return self._tokens_host

    @loss_tokens.setter
    def loss_tokens(self, value) -> None:
        self._tokens_host, self._tokens_dev = int(value), None

    # ---- optimizer -------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        groups = None
        if self.optimizer is None and self.danlu is not None:
            groups = self.danlu.config.method.optimizer_groups(
                self.model, self.args.learning_rate, self.args.weight_decay
            )
        if not groups:
            return super().create_optimizer(model)
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
        self.optimizer = cls(groups, **{k: v for k, v in kwargs.items() if k != "lr"})
        return self.optimizer

    # ---- activation offload (train.offload_activations without checkpointing) -------------
    def compute_loss_context_manager(self):
        stack = super().compute_loss_context_manager()
        if self.danlu is not None and self.model.training:
            from danlu.train.levers import forward_offload_context

            stack.enter_context(forward_offload_context(self.danlu.config))
        return stack

    # ---- NaN / inf guard --------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = ~torch.isfinite(loss)
        self._bad_loss = bad if self._bad_loss is None else (self._bad_loss | bad)
        return torch.where(bad, torch.zeros_like(loss), loss)

    def take_bad_step_flag(self) -> bool:
        """True if this optimizer step saw a NaN/inf loss (one host sync per optimizer step)."""
        flag = bool(self._bad_loss.item()) if self._bad_loss is not None else False
        self._bad_loss = None
        return flag

    # ---- evaluation: eval.metrics on generated answers join eval_loss in the same row -------
    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        description = kwargs.get("description", args[1] if len(args) > 1 else "")
        if self.danlu is not None and self.danlu.config.eval.metrics and description == "Evaluation":
            from danlu.eval.during import generation_metrics

            output.metrics.update(generation_metrics(self, prefix))
        return output

    # ---- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        run_dir = Path(self.danlu.run_dir)
        step = self.state.global_step
        tmp, final = ckpt.temp_dir(run_dir, step), ckpt.checkpoints_dir(run_dir) / f"step-{step}"
        self.check_finite_weights()
        self.store_flos()
        if self.args.should_save:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        try:
            faults.at_save(step, "writing")
            self.save_model(str(tmp), _internal_call=True)
            if not self.args.save_only_model:
                self._save_optimizer_and_scheduler(str(tmp))
                self._save_scaler(str(tmp))
                self._save_rng_state(str(tmp))
            if self.args.should_save:
                self._record_best(run_dir)
                self._save_state(tmp)
                (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle nobody loads
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                ckpt.finalize(tmp, final, step, before_marker=lambda: faults.at_save(step, "renamed"))
                best = self.state.best_model_checkpoint
                ckpt.rotate(run_dir, self.danlu.config.train.save_total_limit, Path(best) if best else None)
            self.accelerator.wait_for_everyone()
        except Exception as exc:  # an OSError, or safetensors' wrapping of one
            shutil.rmtree(tmp, ignore_errors=True)
            friendly = ckpt.disk_full_error(exc, final, _dir_size(ckpt.complete_checkpoints(run_dir)))
            if friendly:
                raise friendly from None
            raise
        log.info("checkpoint saved: %s", final)

    def _record_best(self, run_dir: Path) -> None:
        if self.state.best_global_step:
            best = ckpt.checkpoints_dir(run_dir) / f"step-{self.state.best_global_step}"
            self.state.best_model_checkpoint = str(best) if best.exists() else None

    def _save_state(self, out: Path) -> None:
        from transformers.trainer_callback import ExportableState

        for cb in [c for c in self.callback_handler.callbacks + [self.control] if isinstance(c, ExportableState)]:
            self.state.stateful_callbacks[cb.__class__.__name__] = cb.state()
        self.state.save_to_json(str(out / "trainer_state.json"))

    def check_finite_weights(self) -> None:
        for name, p in self.model.named_parameters():
            if p.requires_grad and not torch.isfinite(p.detach()).all():
                raise NonFiniteWeights(
                    f"parameter {name} holds NaN/inf values; no checkpoint was saved (the last good one is kept). "
                    "Lower train.learning_rate or use train.precision: fp32, then resume.")


def _dir_size(paths) -> int | None:
    if not paths:
        return None
    last = paths[-1]
    return sum(f.stat().st_size for f in last.rglob("*") if f.is_file())


class CausalLMTrainer(DanluTrainerMixin, Trainer):
    """Next-token loss on label positions only (see loss.py), normalised over the whole
    accumulated step."""

    danlu_method = None  # set by build_causal_lm_trainer before construction
    danlu_fused_loss = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # We compute the loss ourselves, normalised by num_items_in_batch: tell the Trainer.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        method = self.danlu_method
        self._keep_logits = accepts_logits_to_keep(self.model) and (method is None or method.supports_logits_to_keep)
        self._capture = None
        if self._keep_logits and self.danlu_fused_loss and fused_head_supported(self.model):
            self._capture = OutputCapture(self.model)  # chunked linear + CE: no full-vocabulary logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        capture = self._capture if model.training else None
        loss, n_tokens, outputs = causal_lm_loss(model, inputs, num_items_in_batch, keep_logits=self._keep_logits,
                                                 capture=capture)
        if model.training and faults.active() and faults.nan_loss(self.state.global_step + 1):
            loss = loss * float("nan")
        if model.training:
            self.count_loss_tokens(n_tokens)
            loss = self._add_method_loss(model, loss, n_tokens, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over ranks
        return (loss, outputs) if return_outputs else loss

    def _add_method_loss(self, model, loss, n_tokens, num_items_in_batch):
        """The method's regulariser (AdaLoRA), weighted by this micro-batch's share of the
        step's loss tokens so that it counts once per optimizer step."""
        extra = self.danlu_method.extra_loss(model) if self.danlu_method is not None else None
        if extra is None:
            return loss
        share = n_tokens / num_items_in_batch if num_items_in_batch is not None else 1.0
        if torch.is_tensor(share):
            share = share.to(loss.device)
        return loss + extra * share

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, _, _ = causal_lm_loss(model, dict(inputs), None, keep_logits=self._keep_logits)
        return loss.detach(), None, None


def quiet(trainer) -> None:
    """Our progress bar and metrics.jsonl replace the Trainer's printed dicts."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def build_causal_lm_trainer(ctx, train_dataset, eval_dataset, trainer_cls=CausalLMTrainer, collator=None):
    from danlu.runplan import fused_loss_requested
    from danlu.train.args import training_arguments
    from danlu.train.callbacks import standard_callbacks
    from danlu.train.levers import describe, liger_arguments, log_levers

    cfg = ctx.config
    if collator is None:
        collator = choose_collator(ctx)
    ctx.levers = describe(cfg, ctx.model, packing=packing_kind(collator))
    log_levers(ctx.levers)
    trainer_cls = type(trainer_cls.__name__, (trainer_cls,), {"danlu_method": cfg.method,
                                                              "danlu_fused_loss": fused_loss_requested(cfg)})
    trainer = trainer_cls(
        model=ctx.model,
        args=training_arguments(ctx, has_eval=eval_dataset is not None, **liger_arguments(cfg)),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=ctx.tokenizer,
        callbacks=standard_callbacks(ctx),
    )
    trainer.danlu = ctx
    quiet(trainer)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return trainer


def choose_collator(ctx):
    """Packing (varlen rows under flash-attention, a 4D block mask otherwise) or padding."""
    from danlu.data.collate import PaddingCollator, packing_collator
    from danlu.runplan import packing_applies

    cfg, pad = ctx.config, ctx.tokenizer.pad_token_id
    if getattr(ctx, "processor", None) is not None:  # a vision-language model: images ride along, no packing
        from danlu.data.vlm import VlmCollator

        if cfg.data.packing:
            log.info("vision-language model: padding each sample (no packing)")
        return VlmCollator(pad)
    packing = packing_applies(cfg)
    if cfg.data.packing and not packing:
        log.info("method %s does not support packing; padding each sample instead", cfg.method.name)
    return packing_collator(pad, cfg.train.max_length, ctx.model) if packing else PaddingCollator(pad)


def packing_kind(collator) -> str:
    from danlu.data.collate import PackingCollator, PaddingCollator, VarlenCollator

    from danlu.data.vlm import VlmCollator

    kinds = {VarlenCollator: "varlen (flash-attention, no mask)", PackingCollator: "4D block-diagonal mask",
             PaddingCollator: "none (padding)", VlmCollator: "none (padding, images)"}
    return kinds.get(type(collator), type(collator).__name__)
