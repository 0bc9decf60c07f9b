"""danlu sweep: six trials on builtin:tiny finish, ASHA prunes at least one, the best trial is
the table's best, best.yaml is a config `danlu train` accepts, and a crashed sweep resumes
(a trial left running is retried; finished trials are not redone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[3]
SPACE = {"train.learning_rate": {"low": 1.0e-4, "high": 0.3, "log": True}, "method.r": [4, 8]}


def _config(tmp_path: Path) -> Path:
    rows = (ROOT / "examples/data/support_qa_eval.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "eval.jsonl").write_text("\n".join(rows[:16]) + "\n", encoding="utf-8")
    cfg = {
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"train": str(ROOT / "examples/data/support_qa.jsonl"), "eval": str(tmp_path / "eval.jsonl"),
                 "max_samples": 32},
        "method": {"name": "lora", "r": 8},
        "train": {"max_steps": 6, "batch_size": 4, "max_length": 64, "logging_steps": 3, "save_steps": 1000,
                  "report_to": []},
        "eval": {"strategy": "steps", "steps": 2, "batch_size": 16},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return path


def test_six_trials_prune_and_pick_the_table_best(tmp_path):
    from danlu.config.load import load_config
    from danlu.tune.sweep import run_sweep

    cfg = _config(tmp_path)
    result = run_sweep(str(cfg), trials=6, space_file=str(tmp_path / "space.yaml"), pruner="asha", seed=0)
    states = [r["state"] for r in result.rows]
    assert len(result.rows) == 6 and set(states) <= {"COMPLETE", "PRUNED"}
    assert states.count("PRUNED") >= 1
    complete = [r for r in result.rows if r["state"] == "COMPLETE"]
    assert result.best_value == min(r["value"] for r in complete)
    assert result.best_number == min(complete, key=lambda r: r["value"])["number"]
    best = load_config(result.best_config)  # a config danlu train accepts
    params = next(r["params"] for r in result.rows if r["number"] == result.best_number)
    assert best.train.learning_rate == pytest.approx(params["train.learning_rate"])
    assert best.method.r == params["method.r"]
    saved = json.loads((tmp_path / "run-sweep" / "results.json").read_text())
    assert saved["best_trial"] == result.best_number

    # resume: a crash left a trial RUNNING; the next call reruns it and keeps the six finished
    import optuna

    study = optuna.load_study(study_name="danlu-sweep", storage=f"sqlite:///{tmp_path / 'run-sweep' / 'study.db'}")
    stuck = study.ask({"train.learning_rate": optuna.distributions.FloatDistribution(1e-4, 0.3, log=True),
                       "method.r": optuna.distributions.CategoricalDistribution([4, 8])})
    resumed = run_sweep(str(cfg), trials=7, space_file=str(tmp_path / "space.yaml"), pruner="asha", seed=0)
    rows = {r["number"]: r for r in resumed.rows}
    assert rows[stuck.number]["state"] == "FAIL"  # the interrupted one, marked
    retried = [r for r in resumed.rows if r["number"] > stuck.number]
    assert len(retried) == 1 and retried[0]["params"] == stuck.params
    assert [rows[n]["value"] for n in range(6)] == [r["value"] for r in result.rows]
