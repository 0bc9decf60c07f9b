"""Evaluation during training: eval.metrics and eval.early_stopping are checked in the config,
the eval set's prompts and references are the ones training sees, the early-stopping rule
follows the metric's direction, patience and min_delta (and survives a resume), and a real
run logs eval metrics in metrics.jsonl and stops early."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from danlu.errors import ConfigError
from danlu.eval.generate import split_encoded
from danlu.train.callbacks import EarlyStopping
from tests.conftest import QA, tiny_config, write_jsonl

IG = -100


@pytest.mark.parametrize("ids,labels,expected", [
    ([1, 2, 3, 4, 5], [IG, IG, 3, 4, 5], ([1, 2], [3, 4, 5])),
    ([1, 2, 3, 4, 5, 6], [IG, 2, IG, IG, 5, 6], ([1, 2, 3, 4], [5, 6])),  # the last answer of a dialogue
    ([1, 2], [IG, IG], None),
])
def test_split_encoded(ids, labels, expected):
    assert split_encoded(ids, labels) == expected


def test_prompts_and_references_are_what_training_sees(tiny_tokenizer):
    from danlu.chat.messages import Conversation
    from danlu.chat.templates import resolve_template
    from danlu.data.encode import encode_conversation
    from danlu.eval.during import prompts_and_references

    tpl = resolve_template(tiny_tokenizer, "auto")
    conv = Conversation([{"role": "user", "content": "流云工单是什么？"},
                         {"role": "assistant", "content": "一款面向小团队的工单系统。"}])
    dataset = SimpleNamespace(items=[encode_conversation(conv, tpl)])
    [(prompt, ref)] = prompts_and_references(dataset, tiny_tokenizer, tpl.stop_token_ids(), 8)
    assert ref == "一款面向小团队的工单系统。"
    assert tiny_tokenizer.decode(prompt) == tpl.render(conv.messages[:1], add_generation_prompt=True)


def _state(step, saved=None):
    return SimpleNamespace(global_step=step, is_world_process_zero=True, stateful_callbacks=saved or {})


def _run(cb, values):
    control = SimpleNamespace(should_training_stop=False)
    for step, value in enumerate(values, start=1):
        cb.on_evaluate(None, _state(step), control, metrics={cb.metric: value})
        if control.should_training_stop:
            return step
    return None


@pytest.mark.parametrize("higher,values,patience,min_delta,stop_at", [
    (False, [3.0, 2.0, 2.5, 2.6], 2, 0.0, 4),  # loss rises twice after its best
    (False, [3.0, 2.0, 2.5, 1.9, 2.0], 2, 0.0, None),  # improved in between: the count restarts
    (False, [3.0, 2.95, 2.92, 2.91], 3, 0.1, 4),  # steps smaller than min_delta do not count
    (True, [10.0, 20.0, 20.0, 15.0], 2, 0.0, 4),  # exact match: higher is better
    (True, [10.0, 5.0], 1, 0.0, 2),
])
def test_early_stopping_rule(higher, values, patience, min_delta, stop_at):
    cb = EarlyStopping("eval_m", patience, min_delta, higher_is_better=higher)
    assert _run(cb, values) == stop_at


def test_early_stopping_state_survives_a_resume():
    cb = EarlyStopping("eval_loss", 3)
    _run(cb, [2.0, 2.5, 2.6])
    saved = {"EarlyStopping": cb.state()}
    json.dumps(saved)  # goes into trainer_state.json
    again = EarlyStopping(**cb.state()["args"])
    again.on_train_begin(SimpleNamespace(eval_strategy="steps"), _state(3, saved), None)
    assert (again.best, again.best_step, again.bad_evals) == (2.0, 1, 2)


@pytest.mark.parametrize("eval_section,message", [
    ({"metrics": ["rougel"]}, "did you mean 'rougeL'"),
    ({"metrics": ["exact_match"], "early_stopping": {"metric": "eval_bleu"}}, "eval_bleu' is not computed"),
    ({"strategy": "no", "early_stopping": {"metric": "eval_loss"}}, "early_stopping needs evaluation"),
    ({"early_stopping": {"metric": "eval_loss", "patience": 0}}, "patience"),
])
def test_config_checks_eval_section(tmp_path, qa_file, eval_section, message):
    from danlu.config.load import load_config

    cfg = tiny_config(tmp_path, qa_file, eval=eval_section)
    with pytest.raises(ConfigError, match=message):
        load_config(str(cfg), [])


def test_training_logs_eval_metrics_and_stops_early(tmp_path):
    """exact match of an untrained model stays 0: with patience 2 the run stops at the third
    evaluation (step 6 of 40)."""
    import torch

    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "output": a} for q, a in QA[:4]])
    cfg = tiny_config(tmp_path, data, data={"train": str(data), "eval": str(data), "packing": False},
                      method={"name": "full"}, train={"max_steps": 40, "batch_size": 4, "save_steps": 100,
                                                      "learning_rate": 1e-4},
                      eval={"strategy": "steps", "steps": 2, "metrics": ["exact_match", "token_f1"],
                            "max_new_tokens": 8, "early_stopping": {"metric": "eval_exact_match", "patience": 2}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and steadier on a shared machine
    try:
        result = run_training(load_config(str(cfg), []))
    finally:
        torch.set_num_threads(threads)
    assert result.info["global_step"] == 6
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert all(r["eval_exact_match"] == 0.0 and 0 <= r["eval_token_f1"] <= 100 for r in evals)
    stop = [r for r in rows if "early_stop" in r]
    assert stop == [{"step": 6, "early_stop": {"metric": "eval_exact_match", "best": 0.0, "best_step": 2,
                                               "patience": 2}}]
