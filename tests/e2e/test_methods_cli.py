"""The real CLI with methods other than full/LoRA (those are in test_train_cli.py): QLoRA and
prompt tuning train start to finish, log and record trainable/total parameters, reload and
answer; `danlu methods --model` reports every method's trainable share."""

from __future__ import annotations

import json

import pytest

from tests.conftest import one_torch_thread, run_cli, tiny_config


def _train(tmp_path, qa_file, method: dict, lr: float):
    cfg = tiny_config(tmp_path, qa_file, method=method,
                      train={"max_steps": 8, "batch_size": 8, "learning_rate": lr, "lr_scheduler": "constant",
                             "warmup_ratio": 0.0, "save_steps": 8})
    res = run_cli("train", str(cfg), env={"OMP_NUM_THREADS": "1"})  # tiny matmuls; a shared box
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    info = json.loads((run / "run_info.json").read_text())
    assert 0 < info["trainable_params"] < info["total_params"]
    assert info["trainable_percent"] == pytest.approx(100 * info["trainable_params"] / info["total_params"], abs=1e-3)
    assert f"trainable params: {info['trainable_params']:,} / {info['total_params']:,}" in res.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0], losses
    return run, info


def _reload_and_answer(run):
    from danlu.infer.generate import generate
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(str(run), device="cpu")
    out = generate(loaded, [[{"role": "user", "content": "How much is the Team plan?"}]], max_new_tokens=6)
    assert out[0]["completion_tokens"] > 0
    return loaded


def test_qlora_trains_on_a_4bit_base_and_reloads_onto_it(tmp_path, qa_file):
    run, info = _train(tmp_path, qa_file, {"name": "qlora", "r": 8}, 1e-2)
    method = json.loads((run / "adapter" / "danlu.json").read_text())["method"]
    assert method["name"] == "lora" and method["quantize"] == "nf4" and method["double_quant"] is True
    loaded = _reload_and_answer(run)
    kinds = {type(m).__name__ for m in loaded.model.modules()}
    assert "Linear4bit" in kinds  # the adapter went back onto the 4-bit base it trained on


def test_prompt_tuning_trains_through_the_cli_and_answers(tmp_path, qa_file):
    run, info = _train(tmp_path, qa_file, {"name": "prompt", "num_virtual_tokens": 8}, 3e-2)
    assert info["trainable_params"] == 8 * 64  # 8 virtual tokens × d=64
    loaded = _reload_and_answer(run)  # generation with the virtual tokens in front
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"


def test_lora_eva_init_reads_training_batches_through_the_cli(tmp_path, qa_file):
    run, info = _train(tmp_path, qa_file, {"name": "lora", "r": 4, "init": "eva", "eva_batches": 2}, 1e-2)
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["init_lora_weights"] == "eva" and config["r"] == 4 and not config.get("rank_pattern")
    from danlu.methods.lora import Lora
    from danlu.plan.arch import resolve_arch

    assert info["trainable_params"] == Lora(r=4).memory_shape(resolve_arch("builtin:tiny")).trainable  # as planned
    _reload_and_answer(run)  # PEFT reloads an EVA-initialised adapter like any LoRA


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_methods_table_on_a_model():
    res = run_cli("methods", "--model", "builtin:tiny", "--json", env={"OMP_NUM_THREADS": "1"})  # the real CLI
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads(res.stdout)}
    expected = {"full", "freeze", "lora", "qlora", "dora", "lora_plus", "rslora", "pissa", "adalora", "ia3", "prefix",
                "prompt", "p_tuning", "adapter", "bitfit"}
    assert expected <= set(rows)
    for name in expected:
        r = rows[name]
        assert {"trains", "can_merge", "inference_cost", "memory_class", "trainable_percent"} <= set(r), name
    pct = {name: rows[name]["trainable_percent"] for name in expected}
    assert pct["full"] == 100.0 and pct["freeze"] < 100.0
    assert pct["bitfit"] < pct["ia3"] < pct["lora"] < pct["full"]
    assert rows["qlora"]["trainable_params"] == rows["lora"]["trainable_params"]
    assert rows["qlora"]["memory_class"] == "lowest" and rows["qlora"]["is"] == "lora"
    assert [n for n in expected if rows[n]["can_merge"]] and not rows["prefix"]["can_merge"]
