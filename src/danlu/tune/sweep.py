"""`danlu sweep`: hyper-parameter search over a run config with Optuna.

Each trial is a normal danlu run (its own run directory under the sweep directory) with some
keys changed; the eval metric is reported to Optuna at every evaluation, and the pruner (ASHA
successive halving by default, or the median rule) stops unpromising trials early. The TPE
sampler proposes the next trial. The study lives in an SQLite database in the sweep directory,
so a crashed or interrupted sweep resumes where it stopped: finished trials are kept, a trial
that was running is retried with the same settings. The best trial's resolved config is
written to best.yaml, and every trial to results.json.

Search space (--space YAML; dotted keys as in overrides):
    train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
    method.r: [8, 16, 32]
    train.warmup_ratio: {low: 0.0, high: 0.1}
Default: learning rate log-uniform from auto/10 to auto×10; LoRA rank in 8, 16, 32, 64."""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from danlu.errors import ConfigError, UserError

log = logging.getLogger(__name__)
STUDY = "danlu-sweep"


@dataclass
class SweepResult:
    rows: list[dict]
    best_number: int | None
    best_value: float | None
    best_config: str | None
    sweep_dir: str

    def to_dict(self) -> dict:
        return {"sweep_dir": self.sweep_dir, "best_trial": self.best_number, "best_value": self.best_value,
                "best_config": self.best_config, "trials": self.rows}


def default_space(cfg) -> dict:
    from danlu.plan.arch import resolve_arch

    try:
        n = resolve_arch(cfg.model.name_or_path).n_params
    except UserError:
        n = 1_000_000_000
    lr = cfg.method.auto_learning_rate(n)
    space = {"train.learning_rate": {"low": lr / 10, "high": lr * 10, "log": True}}
    if cfg.method.name == "lora":
        space["method.r"] = [8, 16, 32, 64]
    return space


def load_space(path: str | None, cfg) -> dict:
    if not path:
        return default_space(cfg)
    try:
        space = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the search space: {exc}", where=str(path)) from None
    if not isinstance(space, dict) or not space:
        raise ConfigError("a search space maps dotted keys to [choices] or {low, high, log}", where=str(path))
    return space


def suggest(trial, space: dict) -> dict:
    params = {}
    for key, rule in space.items():
        if isinstance(rule, list):
            params[key] = trial.suggest_categorical(key, rule)
        elif isinstance(rule, dict) and "low" in rule and "high" in rule:
            low, high = rule["low"], rule["high"]
            if isinstance(low, int) and isinstance(high, int) and not rule.get("log"):
                params[key] = trial.suggest_int(key, low, high, step=int(rule.get("step", 1)))
            else:
                params[key] = trial.suggest_float(key, float(low), float(high), log=bool(rule.get("log", False)))
        else:
            raise ConfigError(f"search space entry {key!r}: give a list of choices or {{low, high[, log]}}",
                              where="--space")
    return params


def _set(data: dict, dotted: str, value) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def prepare_base(config: str) -> tuple[dict, object]:
    """The config as plain data, with evaluation made frequent enough to prune on."""
    from danlu.config.load import load_config_dict, read_yaml

    data, _ = read_yaml(config)
    cfg = load_config_dict(copy.deepcopy(data), source=config)
    if not cfg.data.eval and cfg.data.eval_split <= 0:
        log.info("no eval data: holding out 10%% of the training data (data.eval_split=0.1) to score trials")
        _set(data, "data.eval_split", 0.1)
    if cfg.train.max_steps > 0 and (cfg.eval.strategy != "steps" or not cfg.eval.steps):
        _set(data, "eval.strategy", "steps")
        _set(data, "eval.steps", max(1, math.ceil(cfg.train.max_steps / 4)))
    elif cfg.eval.strategy == "no":
        _set(data, "eval.strategy", "epoch")
    return data, load_config_dict(copy.deepcopy(data), source=config)


class _Pruning:
    """A TrainerCallback: report the metric at each evaluation; stop the run when pruned."""

    def __new__(cls, trial, metric):
        from transformers import TrainerCallback

        class PruningCallback(TrainerCallback):
            pruned = False
            last = None
            step = None

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if not metrics or metric not in metrics:
                    raise UserError(f"metric {metric!r} is not among the eval metrics {sorted(metrics or {})}",
                                    where="--metric")
                self.last, self.step = float(metrics[metric]), state.global_step
                trial.report(self.last, state.global_step)
                if trial.should_prune():
                    self.pruned = True
                    control.should_training_stop = True

        return PruningCallback()


def _objective(base: dict, space: dict, metric: str, sweep_dir: Path):
    import optuna

    from danlu.config.load import load_config_dict
    from danlu.train.runner import run_training

    def objective(trial):
        params = suggest(trial, space)
        data = copy.deepcopy(base)
        for key, value in params.items():
            _set(data, key, value)
        run_dir = sweep_dir / f"trial-{trial.number:03d}"
        _set(data, "output_dir", str(run_dir))
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = load_config_dict(data, source=f"trial {trial.number}")
        cb = _Pruning(trial, metric)
        run_training(cfg, overwrite=True, callbacks=[cb])
        trial.set_user_attr("step", cb.step)
        if cb.last is None:
            raise UserError(f"trial {trial.number} finished without an evaluation", where="eval.strategy",
                            hint="set eval.strategy: steps with eval.steps, or give data.eval")
        if cb.pruned:
            raise optuna.TrialPruned(f"pruned at step {cb.step}")
        return cb.last

    return objective


def _study(sweep_dir: Path, pruner: str, seed: int):
    import optuna

    pruners = {
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    if pruner not in pruners:
        raise UserError(f"unknown pruner {pruner!r}; choose asha, median or none", where="--pruner")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
    return optuna.create_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir / 'study.db'}", direction="minimize",
                               sampler=sampler, pruner=pruners[pruner](), load_if_exists=True)


def _retry_interrupted(study) -> None:
    """Trials left RUNNING by a crash: mark them failed and queue their settings again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
        log.info("trial %d was interrupted; it runs again with the same settings", t.number)


def run_sweep(config: str, *, trials: int, metric: str = "eval_loss", space_file: str | None = None,
              pruner: str = "asha", out: str | None = None, seed: int = 0) -> SweepResult:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError("danlu sweep needs optuna", hint="pip install 'danlu[plan]'") from None
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}", where="--trials")
    base, cfg = prepare_base(config)
    space = load_space(space_file, cfg)
    sweep_dir = Path(out or f"{cfg.output_dir.rstrip('/')}-sweep")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = _study(sweep_dir, pruner, seed)
    _retry_interrupted(study)
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done < trials:
        study.optimize(_objective(base, space, metric, sweep_dir), n_trials=trials - done, catch=())
    return _results(study, sweep_dir, metric)


def _results(study, sweep_dir: Path, metric: str) -> SweepResult:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (list(t.intermediate_values.values())[-1]
                                                     if t.intermediate_values else None)
        rows.append({"number": t.number, "state": t.state.name, "value": value, "params": t.params,
                     "step": t.user_attrs.get("step") or (max(t.intermediate_values) if t.intermediate_values else None),
                     "run_dir": t.user_attrs.get("run_dir")})
    complete = [r for r in rows if r["state"] == TrialState.COMPLETE.name and r["value"] is not None]
    best = min(complete, key=lambda r: r["value"]) if complete else None
    best_config = None
    if best and best["run_dir"] and (Path(best["run_dir"]) / "config.yaml").exists():
        best_config = str(sweep_dir / "best.yaml")
        text = (Path(best["run_dir"]) / "config.yaml").read_text(encoding="utf-8")
        header = f"# danlu sweep: best of {len(rows)} trials — trial {best['number']}, {metric} = {best['value']:.6g}\n"
        Path(best_config).write_text(header + text, encoding="utf-8")
    result = SweepResult(rows, best["number"] if best else None, best["value"] if best else None, best_config,
                         str(sweep_dir))
    (sweep_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    return result
