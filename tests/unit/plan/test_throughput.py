"""FLOPs per token by hand (6N full, 4N + 6N_trainable frozen base, attention, checkpointing,
stages), hours from tokens and throughput, and dollars from the dated price table."""

from __future__ import annotations

import pytest

from danlu.plan.arch import resolve_arch
from danlu.plan.hardware import gpu, load_prices, prices_for
from danlu.plan.spec import RunSpec
from danlu.plan.throughput import attention_flops, estimate_time, training_flops


def _spec(method="lora", opts=None, **kw):
    return RunSpec(resolve_arch("Qwen/Qwen2.5-7B"), method, opts if opts is not None else {"r": 16}, max_length=2048,
                   **kw)


def test_full_is_three_forwards_and_lora_two_plus_adapter():
    a = resolve_arch("Qwen/Qwen2.5-7B")
    n = a.linear_params + a.vocab * a.hidden  # matmul weights a token meets (lm_head at every position)
    attn = 2 * 2 * a.layers * a.q_dim * 2048 / 2
    assert attn == attention_flops(a, 2048)
    assert training_flops(_spec("full", {})).per_token == pytest.approx(3 * (2 * n + attn))
    lora = _spec()
    assert training_flops(lora).per_token == pytest.approx(2 * (2 * n + attn) + 6 * lora.shape.trainable)
    ckpt = training_flops(_spec(gradient_checkpointing=True)).per_token
    assert ckpt - training_flops(lora).per_token == pytest.approx(2 * a.linear_params + attn)


def test_dpo_runs_two_sequences_and_a_reference_forward():
    sft = training_flops(_spec("full", {})).per_token
    dpo = training_flops(_spec("full", {}, stage="dpo")).per_token
    assert dpo > 2 * sft  # two sequences per sample, plus the reference model's forward


def test_hours_and_cost():
    device = gpu("h100")
    s = _spec(dataset_tokens=10_000_000, epochs=2.0)
    t = estimate_time(s, device, load_prices())
    assert t.tokens_total == 20_000_000
    assert t.tokens_per_s == pytest.approx(device.peak_flops("bf16") * t.efficiency / t.flops_per_token)
    assert t.hours == pytest.approx(20_000_000 / t.tokens_per_s / 3600)
    prices = prices_for(device, load_prices())
    assert [c["usd"] for c in t.costs] == [round(t.hours * p.usd_per_hour, 2) for p in prices]
    assert all(c["as_of"] for c in t.costs)


def test_price_table_is_dated_and_covers_the_usual_gpus():
    rows = load_prices()
    assert {"rtx4090", "a10g", "l4", "a100-40gb", "a100-80gb", "h100", "h200"} <= {p.gpu for p in rows}
    assert all(p.as_of and p.source and p.usd_per_hour > 0 for p in rows)


def test_own_price_table(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("- {gpu: H100, provider: mine, usd_per_hour: 1.5, as_of: 2026-06}\n")
    rows = load_prices(path)
    assert rows[0].gpu == "h100" and rows[0].usd_per_hour == 1.5
    from danlu.errors import UserError

    path.write_text("- {provider: mine}\n")
    with pytest.raises(UserError, match="row 1"):
        load_prices(path)



def test_cpu_bf16_time_follows_the_cpu_bench_reading(monkeypatch):
    """On a CPU with native bf16 the planner uses the measured bf16 matmul rate and bf16
    efficiency: the CPU bench (cpu-lora: 34.1M Qwen2 shape, LoRA r16, length 512) is predicted
    within 25% of the danlu tokens/s its committed reading recorded."""
    import json
    from pathlib import Path

    import danlu.models.load as load
    from danlu.plan.arch import arch_from_config
    from danlu.plan.hardware import cpu_device

    monkeypatch.setattr(load, "cpu_has_native_bf16", lambda: True)
    reading = json.loads((Path(__file__).resolve().parents[3] / "bench" / "results" /
                          "2026-12-02-cpu-2c-x86_64-cpu-lora.json").read_text())
    arch = arch_from_config({"model_type": "qwen2", "hidden_size": 512, "intermediate_size": 1408,
                             "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                             "vocab_size": 32000, "tie_word_embeddings": True}, name="cpu bench")
    device = cpu_device()
    assert device.bf16_tflops > 2 * device.fp32_tflops  # the measured bf16 rate, not the fp32 one
    spec = RunSpec(arch, "lora", {"r": 16, "target_modules": "all-linear"}, max_length=512, batch_size=8,
                   precision="bf16", device="cpu")
    t = estimate_time(spec, device, [])
    measured = reading["danlu"]["tokens_per_s"]
    assert 0.75 < t.tokens_per_s / measured < 1.25, (t.tokens_per_s, measured)
