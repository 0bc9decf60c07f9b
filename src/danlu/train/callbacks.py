"""Callbacks every danlu run uses: metrics.jsonl, a progress bar (loss, lr, tokens/s, ETA),
TensorBoard under RUN_DIR/tensorboard, a clean stop on SIGTERM/SIGINT, and the NaN guard."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

log = logging.getLogger(__name__)


class NonFiniteGuard(TrainerCallback):
    """A step whose loss was NaN/inf is skipped (grads dropped before the optimizer sees them);
    `train.max_bad_steps` of them in a row stop the run."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        t = self.trainer
        if not t.take_bad_step_flag():
            t.bad_steps_in_row = 0
            return
        t.bad_steps_in_row += 1
        t.skipped_steps += 1
        for p in t.model.parameters():
            p.grad = None  # AdamW skips parameters without a gradient: no update, no momentum change
        log.warning("step %d: loss is NaN/inf; step skipped (%d in a row)", state.global_step + 1, t.bad_steps_in_row)
        limit = t.danlu.config.train.max_bad_steps if t.danlu else 10
        if t.bad_steps_in_row >= limit:
            from danlu.errors import DanluError

            raise DanluError(
                f"{t.bad_steps_in_row} NaN/inf losses in a row (train.max_bad_steps={limit}); stopping. "
                "Lower train.learning_rate, check the data, or use train.precision: fp32."
            )


class FaultInjection(TrainerCallback):
    """Only when DANLU_FAULTS is set (reliability tests): fire step faults before a step runs."""

    def on_step_begin(self, args, state, control, **kwargs):
        from danlu import faults

        faults.at_step(state.global_step + 1)


class MetricsWriter(TrainerCallback):
    """One JSON object per logging step in RUN_DIR/metrics.jsonl."""

    def __init__(self, run_dir: Path, trainer_ref=None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.trainer_ref = trainer_ref
        self._t0 = None
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._tokens0 = time.perf_counter(), self._tokens()

    def _tokens(self) -> int:
        t = self.trainer_ref() if self.trainer_ref else None
        return getattr(t, "loss_tokens", 0) if t else 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now, tokens = time.perf_counter(), self._tokens()
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():
            name = {"learning_rate": "lr"}.get(key, key)
            row[name] = value
        if "loss" in logs:
            elapsed = now - (self._t0 or now)
            row["tokens"] = tokens
            row["tokens_per_s"] = round((tokens - self._tokens0) / elapsed, 1) if elapsed > 0 else None
            self._t0, self._tokens0 = now, tokens
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class ProgressBar(TrainerCallback):
    """tqdm bar on rank 0: step/total, ETA, loss, lr, tokens/s."""

    def __init__(self, trainer_ref=None):
        self.bar = None
        self.trainer_ref = trainer_ref
        self._t0 = None
        self._tok0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from danlu.progress import bar

            self.bar = bar(total=state.max_steps, initial=state.global_step, desc="train", unit="step", leave=True)
            self._t0 = time.perf_counter()
            t = self.trainer_ref() if self.trainer_ref else None
            self._tok0 = getattr(t, "loss_tokens", 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        t = self.trainer_ref() if self.trainer_ref else None
        tokens = getattr(t, "loss_tokens", 0)
        elapsed = time.perf_counter() - self._t0
        post = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs.get('learning_rate', 0):.2e}"}
        if elapsed > 0:
            post["tok/s"] = f"{(tokens - self._tok0) / elapsed:.0f}"
        self.bar.set_postfix(post, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class GracefulStop(TrainerCallback):
    """SIGTERM / Ctrl-C: finish the current step, save a checkpoint, stop. A second signal
    exits at once."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint after this step, then stopping", self.signal_name)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name is not None:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class EarlyStopping(TrainerCallback, ExportableState):
    """`eval.early_stopping`: stop when `metric` has not improved by more than `min_delta` for
    `patience` evaluations in a row. The stop is logged and written to metrics.jsonl as
    {"step", "early_stop": {...}}; its state is kept in checkpoints, so a resumed run goes on
    counting from where it was."""

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0, higher_is_better: bool = False,
                 metrics_path: str | None = None):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.higher_is_better, self.metrics_path = higher_is_better, metrics_path
        self.best: float | None = None
        self.best_step = 0
        self.bad_evals = 0

    def state(self) -> dict:
        return {"args": {"metric": self.metric, "patience": self.patience, "min_delta": self.min_delta,
                         "higher_is_better": self.higher_is_better, "metrics_path": self.metrics_path},
                "attributes": {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}}

    def on_train_begin(self, args, state, control, **kwargs):
        from danlu.errors import UserError

        if args.eval_strategy == "no":
            raise UserError("eval.early_stopping needs eval data", where="eval.early_stopping",
                            hint="set data.eval (a file) or data.eval_split (a fraction of train)")
        saved = state.stateful_callbacks.get(type(self).__name__)  # resumed: continue the count
        if isinstance(saved, dict):
            for key, value in saved.get("attributes", {}).items():
                setattr(self, key, value)

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        gain = value - self.best if self.higher_is_better else self.best - value
        return gain > self.min_delta

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            log.warning("early stopping: %s is not among the eval metrics (%s)", self.metric, ", ".join(metrics or {}))
            return
        if self.improved(value):
            self.best, self.best_step, self.bad_evals = float(value), state.global_step, 0
            return
        self.bad_evals += 1
        if self.bad_evals < self.patience:
            return
        control.should_training_stop = True
        event = {"metric": self.metric, "best": self.best, "best_step": self.best_step, "patience": self.patience}
        log.warning("early stopping at step %d: %s has not improved on %.4f (step %d) for %d evaluations",
                    state.global_step, self.metric, self.best, self.best_step, self.patience)
        if self.metrics_path and state.is_world_process_zero:
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": state.global_step, "early_stop": event}) + "\n")


def early_stopping(ctx) -> EarlyStopping | None:
    es = ctx.config.eval.early_stopping
    if es is None:
        return None
    from danlu.eval.metrics import higher_is_better

    return EarlyStopping(es.metric, es.patience, es.min_delta, higher_is_better(es.metric),
                         str(Path(ctx.run_dir) / "metrics.jsonl"))


def standard_callbacks(ctx) -> list[TrainerCallback]:
    holder = _TrainerRef(ctx)
    callbacks: list[TrainerCallback] = [MetricsWriter(ctx.run_dir, holder), ProgressBar(holder), ctx.stopper]
    stopper = early_stopping(ctx)
    if stopper is not None:
        callbacks.append(stopper)
    callbacks += ctx.config.method.callbacks(ctx)
    from danlu import faults
    from danlu.train.memory import release_memory_callback

    release = release_memory_callback(ctx.config)
    if release is not None:
        callbacks.append(release)

    if faults.active():
        callbacks.append(FaultInjection())
    if "tensorboard" in ctx.config.train.report_to and ctx.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from transformers.integrations import TensorBoardCallback

            callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(str(Path(ctx.run_dir) / "tensorboard"))))
        except ImportError:
            log.warning("tensorboard is not installed; no TensorBoard logs (pip install tensorboard)")
    return callbacks


class _TrainerRef:
    def __init__(self, ctx):
        self.ctx = ctx

    def __call__(self):
        return self.ctx.trainer
