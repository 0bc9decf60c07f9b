"""The planner follows the GPU levers `danlu train` uses: flash-attention's varlen packing holds
no L×L mask, and activation offload moves saved activations from the GPU to host memory."""

from __future__ import annotations

import pytest

from danlu import runplan as levers  # the probes the planner asks (danlu.runplan)
from danlu.plan.activations import Numerics, activation_bytes
from danlu.plan.arch import resolve_arch
from danlu.plan.estimate import estimate_memory
from danlu.plan.spec import RunSpec, planned_attention, spec_from_config

QWEN15 = "Qwen/Qwen2.5-1.5B"


def spec(**kw) -> RunSpec:
    kw.setdefault("batch_size", 4)
    kw.setdefault("max_length", 1024)
    return RunSpec(resolve_arch(QWEN15), "lora", {"r": 16}, **kw)


def _acts(attn: str, seq: int) -> float:
    s = spec(attn=attn, max_length=seq)
    num = Numerics(attn=attn, mask_4d=attn != "flash_attention_2")
    return activation_bytes(s.arch, s.shape, num, batch=4, seq=seq, checkpointing=False).blocks


def test_varlen_flash_attention_activations_are_linear_in_length():
    # flash-attention packs varlen (no mask, no repeated KV heads): twice the tokens, twice the bytes
    assert _acts("flash_attention_2", 2048) == pytest.approx(2 * _acts("flash_attention_2", 1024))
    # sdpa packs with a (B, 1, L, L) mask per block: more than twice
    assert _acts("sdpa", 2048) > 2.01 * _acts("sdpa", 1024)
    mask = resolve_arch(QWEN15).layers * 4 * 2048 * 2048 * 2  # bf16 additive mask per block
    assert _acts("sdpa", 2048) - _acts("flash_attention_2", 2048) >= mask


def test_auto_attention_is_planned_as_train_resolves_it(monkeypatch):
    assert planned_attention("auto", "cuda", "bf16") == "sdpa"  # no CUDA / flash-attn on this machine
    assert planned_attention("eager", "cuda", "bf16") == "eager"
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    monkeypatch.setattr(levers, "flash_attn_installed", lambda: True)
    assert planned_attention("auto", "cuda", "bf16") == "flash_attention_2"
    assert planned_attention("auto", "cuda", "fp32") == "sdpa"
    assert planned_attention("auto", "cpu", "bf16") == "sdpa"


def _config(**train):
    from danlu.config.schema import RunConfig

    return RunConfig.model_validate({"model": {"name_or_path": QWEN15}, "data": {"train": "x.jsonl"},
                                     "method": {"name": "lora"}, "train": train})


def test_spec_from_config_carries_offload_on_cuda_only():
    assert spec_from_config(_config(offload_activations=True), device="cuda").offload_activations is True
    assert spec_from_config(_config(offload_activations=True), device="cpu").offload_activations is False


def test_offload_without_checkpointing_moves_every_saved_activation():
    plain, off = estimate_memory(spec()), estimate_memory(spec(offload_activations=True))
    moved = plain.term("activations")
    assert off.term("activations") == 0
    assert off.host_bytes == pytest.approx(moved)
    assert 0 < off.term("recompute") < moved / 20  # one block back at a time (28 blocks)
    assert off.peak_bytes < plain.peak_bytes - 0.8 * moved
    assert any("activation offload" in n for n in off.notes)


def test_offload_with_checkpointing_moves_the_block_inputs():
    a = resolve_arch(QWEN15)
    ck = estimate_memory(spec(gradient_checkpointing=True))
    off = estimate_memory(spec(gradient_checkpointing=True, offload_activations=True))
    inputs = a.layers * 4 * 1024 * a.hidden * 2  # layers × tokens × hidden × bf16 stream
    assert off.host_bytes == pytest.approx(inputs)
    assert ck.term("activations") - off.term("activations") == pytest.approx(inputs)
    assert off.term("recompute") == ck.term("recompute")  # the block being rebuilt stays on the GPU
    assert off.peak_bytes < ck.peak_bytes


def test_liger_saves_the_norm_inputs_as_they_are_and_no_swiglu_product():
    a = resolve_arch(QWEN15)
    s = spec()
    plain = activation_bytes(a, s.shape, Numerics(mask_4d=False, attn="flash_attention_2"), batch=4, seq=1024,
                             checkpointing=False)
    liger = activation_bytes(a, s.shape, Numerics(mask_4d=False, attn="flash_attention_2", liger=True), batch=4,
                             seq=1024, checkpointing=False)
    tokens = 4 * 1024
    # per block: two RMSNorms save a bf16 input (2 B) instead of an fp32 copy (4 B); SwiGLU drops act (bf16)
    per_block = tokens * (2 * a.hidden * (4 - 2) + a.intermediate * 2)
    first_norm = tokens * a.hidden * (4 - 2)  # block 0's first norm: its input (the embeddings) needs no gradient
    assert plain.blocks - liger.blocks == pytest.approx(a.layers * per_block - first_norm)
    assert plain.head - liger.head == pytest.approx(tokens * a.hidden * (4 - 2))  # the final norm


def test_liger_is_planned_as_train_resolves_it(monkeypatch):
    assert spec_from_config(_config(), device="cuda").liger is False  # auto: no CUDA / liger-kernel here
    assert spec_from_config(_config(liger_kernel=True), device="cuda").liger is True
    assert spec_from_config(_config(liger_kernel=True), device="cpu").liger is False
    on = estimate_memory(spec(liger=True)).term("activations")
    assert on < estimate_memory(spec()).term("activations")
