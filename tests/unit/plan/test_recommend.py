"""The recommender follows the seeds' decision matrix: QLoRA for a 7B on a 24 GB card, full
fine-tuning for a 0.5B on an 80 GB card, LoRA when the data is small, sharding before offload."""

from __future__ import annotations

from danlu.plan.arch import resolve_arch
from danlu.plan.hardware import custom_gpu, gpu
from danlu.plan.recommend import COMFORT, recommend
from danlu.plan.spec import RunSpec


def _spec(model, length=2048, batch=4, accum=4):
    return RunSpec(resolve_arch(model), "lora", {"r": 16}, batch_size=batch, grad_accum=accum, max_length=length)


def _settings(rec):
    return {s: v for s, v, _ in rec.reasons}


def test_7b_on_24gb_gets_qlora():
    rec = recommend(_spec("Qwen/Qwen2.5-7B-Instruct"), gpu("rtx4090"), gpus=1)
    s = _settings(rec)
    assert s["method"] == "qlora"
    assert rec.chosen.need_bytes <= COMFORT * gpu("rtx4090").memory_bytes
    assert int(s["batch_size"]) * int(s["grad_accum"]) >= 16  # the effective batch is kept
    assert all(why for _, _, why in rec.reasons)  # every setting says why
    assert "LoRA (16-bit base) needs more than 80%" in rec.reasons[0][2]


def test_7b_on_24gb_with_danlus_fused_loss_still_gets_qlora():
    # the chunked loss makes 16-bit LoRA squeeze in at micro-batch 1; QLoRA runs a larger batch
    rec = recommend(_spec("Qwen/Qwen2.5-7B-Instruct").with_(fused_loss=True, loss_chunk=1024), gpu("rtx4090"))
    assert _settings(rec)["method"] == "qlora" and rec.chosen.batch_size >= 2


def test_7b_on_24gb_with_todays_loss_chunk_gets_qlora_for_speed():
    # 128-token chunks (152k vocabulary) let 16-bit LoRA fit micro-batch 2 with recomputation;
    # QLoRA fits micro-batch 4 and is faster even after its dequantisation cost
    from danlu.train.fused_ce import loss_chunk

    spec = _spec("Qwen/Qwen2.5-7B-Instruct").with_(fused_loss=True, loss_chunk=loss_chunk(152064))
    rec = recommend(spec, gpu("rtx4090"))
    lora = rec.by_method["lora"]
    assert lora is not None and lora.batch_size == 2  # it does fit, just slower
    assert _settings(rec)["method"] == "qlora" and rec.chosen.speed > lora.speed
    assert "faster, and it trains as well" in rec.reasons[0][2]


def test_lora_beats_qlora_when_both_run_the_same_batch():
    spec = _spec("Qwen/Qwen2.5-7B-Instruct")
    rec = recommend(spec, gpu("a100-80gb"))
    assert _settings(rec)["method"] == "lora"
    assert rec.by_method["qlora"].batch_size <= rec.chosen.batch_size


def test_half_b_on_80gb_gets_full_fine_tuning():
    rec = recommend(_spec("Qwen/Qwen2.5-0.5B-Instruct"), gpu("a100-80gb"), gpus=1)
    assert _settings(rec)["method"] == "full"
    assert rec.chosen.offload == "none"


def test_small_data_prefers_lora_over_full():
    rec = recommend(_spec("Qwen/Qwen2.5-0.5B-Instruct"), gpu("a100-80gb"), gpus=1, dataset_tokens=200_000)
    assert _settings(rec)["method"] == "lora"
    assert "small data" in rec.reasons[0][2]


def test_a_budget_of_gpus_is_used_and_sharding_comes_before_offload():
    rec = recommend(_spec("meta-llama/Llama-3.1-70B"), gpu("h100"), gpus=8)
    assert rec.chosen.offload == "none"
    assert rec.chosen.gpus == 8 and rec.chosen.strategy in ("fsdp", "ddp")
    one = recommend(_spec("meta-llama/Llama-3.1-8B"), gpu("h100"), gpus=4)
    assert one.chosen.gpus == 4  # fits one GPU: DDP over the whole budget


def test_nothing_fits_says_what_to_change():
    rec = recommend(_spec("Qwen/Qwen2.5-72B", length=8192), custom_gpu(8), gpus=1)
    assert rec.chosen is None
    assert "max_length" in rec.reasons[0][2]
