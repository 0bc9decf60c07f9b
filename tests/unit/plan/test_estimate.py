"""Each memory term against a hand calculation, parallel strategies against the ZeRO paper's
own figures, stages by the models they hold, and the seeds' sanity figures."""

from __future__ import annotations

import pytest

from danlu.plan.arch import resolve_arch
from danlu.plan.estimate import OPTIMIZER_BYTES, estimate_memory
from danlu.plan.spec import RunSpec

GB = 1e9
QWEN7 = "Qwen/Qwen2.5-7B"
N7 = 7_615_616_512
LINEAR7 = 28 * (2 * 3584 * 3584 + 2 * 3584 * 512 + 3 * 3584 * 18944)  # q, o; k, v; gate, up, down
LORA16 = 28 * 16 * (2 * (3584 + 3584) + 2 * (3584 + 512) + 3 * (3584 + 18944))  # r × (in + out), 7 modules


def spec(model=QWEN7, method="lora", opts=None, **kw) -> RunSpec:
    kw.setdefault("batch_size", 1)
    kw.setdefault("max_length", 512)
    return RunSpec(resolve_arch(model), method, opts if opts is not None else {"r": 16}, **kw)


def term(est, key):
    return est.term(key)


def test_weights_full_lora_qlora_by_hand():
    assert resolve_arch(QWEN7).linear_params == LINEAR7
    full = estimate_memory(spec(method="full", opts={}))
    assert term(full, "weights") == N7 * 4  # trained in place: fp32 master weights
    lora = estimate_memory(spec())
    assert spec().shape.trainable == LORA16 == 40_370_176
    assert term(lora, "weights") == N7 * 2  # frozen base in bf16 on a GPU
    assert term(lora, "trainable") == LORA16 * 4
    q = estimate_memory(spec(opts={"r": 16, "quantize": "nf4"}))
    nf4 = LINEAR7 * (0.5 + 1 / 64 + 4 / (64 * 256))  # packed 4-bit + double-quantised absmax
    assert term(q, "weights") == pytest.approx(nf4 + (N7 - LINEAR7) * 4)  # the rest upcast to fp32
    q8 = estimate_memory(spec(opts={"r": 16, "quantize": "int8"}))
    rows = 28 * (3584 + 512 + 512 + 3584 + 18944 * 2 + 3584)  # one fp32 scale per output row
    assert term(q8, "weights") == LINEAR7 + 4 * rows + (N7 - LINEAR7) * 4


def test_cpu_holds_everything_in_fp32():
    cpu = estimate_memory(spec(device="cpu", precision="fp32"))
    assert term(cpu, "weights") == N7 * 4
    assert term(cpu, "runtime") > 0  # the Python process itself


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_BYTES))
def test_gradients_and_optimizer_states(optimizer):
    est = estimate_memory(spec(optimizer=optimizer))
    assert term(est, "gradients") == LORA16 * 4
    if optimizer != "adafactor":
        assert term(est, "optimizer") == pytest.approx(LORA16 * OPTIMIZER_BYTES[optimizer])
    assert {"adamw": 8.0, "adamw_8bit": 2.03, "paged_adamw_8bit": 2.03, "sgd": 0.0}.get(optimizer, 0) == \
        OPTIMIZER_BYTES[optimizer]


def test_one_block_of_activations_by_hand():
    """builtin:small, full fine-tuning, fp32 on CPU, packed (4D mask): per token and block the
    saved tensors are x, rstd, normed, normed·w (attention in), q, k and v repeated to 8 heads,
    the attention output, its log-sum-exp, and the same norm trio before the MLP, then gate,
    SiLU(gate), up and their product; plus the float mask, L per token."""
    h, i, heads = 256, 704, 8
    per_token = 4 * ((h + 1 + h + h) + 4 * h + heads + (h + 1 + h + h) + 4 * i)
    B, L = 2, 64
    s = spec("builtin:small", "full", {}, batch_size=B, max_length=L, device="cpu", precision="fp32")
    est = estimate_memory(s)
    head = 2 * B * L * 32 * 4 + B * L * h * 4 + B * L * h * 8  # RoPE cos/sin; final norm x; normed + lm_head input
    assert term(est, "activations") == 4 * (B * L * per_token + B * L * L * 4) + head


def test_logits_only_at_label_positions():
    """danlu's loss: B × L label positions × vocabulary; fp32: logits, log-softmax and two
    gradients alive at the start of backward (12 B); bf16 autocast adds a 16-bit copy (14 B)."""
    gpu = estimate_memory(spec(batch_size=4, max_length=2048))
    assert term(gpu, "logits") == 4 * 2048 * 152064 * 14
    cpu = estimate_memory(spec("builtin:tiny", "full", {}, batch_size=4, max_length=128, device="cpu", precision="fp32"))
    assert term(cpu, "logits") == 4 * 128 * 8192 * 12
    chunked = estimate_memory(spec(batch_size=4, max_length=2048, loss_chunk=1024))
    assert term(chunked, "logits") == 1024 * 152064 * 14


def test_gradient_checkpointing_shrinks_activations_to_block_inputs():
    plain = estimate_memory(spec(batch_size=4, max_length=2048))
    ckpt = estimate_memory(spec(batch_size=4, max_length=2048, gradient_checkpointing=True))
    # bf16 residual stream of a frozen bf16 base: 28 blocks × tokens × hidden × 2 B, plus the head
    assert term(ckpt, "activations") - 28 * 4 * 2048 * 3584 * 2 < 0.1 * term(ckpt, "activations")
    assert term(ckpt, "activations") + term(ckpt, "recompute") < term(plain, "activations") / 5


@pytest.mark.parametrize("stage,params_per_gpu", [
    # ZeRO paper (Rajbhandari et al. 2020), Figure 1: 7.5B parameters, 64 GPUs, mixed-precision Adam
    ("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9),
])
def test_zero_stages_match_the_zero_paper(stage, params_per_gpu):
    """Model states per GPU: 2 B bf16 weights + 2 B gradients + 12 B fp32 master/momentum/variance."""
    s = spec("meta-llama/Llama-2-7b-hf", "full", {}, gpus=64, strategy=stage)
    est = estimate_memory(s)
    n = s.arch.n_params
    states = term(est, "weights") + term(est, "gradients") + term(est, "optimizer")
    assert states / n * 7.5e9 / GB == pytest.approx(params_per_gpu, rel=0.02)


def test_ddp_adds_buckets_and_fsdp_divides():
    one = estimate_memory(spec("meta-llama/Llama-3.1-8B", "full", {}, gpus=1))
    ddp = estimate_memory(spec("meta-llama/Llama-3.1-8B", "full", {}, gpus=4, strategy="ddp"))
    fsdp = estimate_memory(spec("meta-llama/Llama-3.1-8B", "full", {}, gpus=4, strategy="fsdp"))
    assert term(ddp, "parallel") == term(one, "gradients")  # buckets: a second copy of the gradients
    for key in ("weights", "gradients", "optimizer"):
        assert term(fsdp, key) == pytest.approx(term(one, key) / 4)
    assert fsdp.peak_bytes < one.peak_bytes / 2


def test_offload_moves_states_to_host():
    est = estimate_memory(spec("meta-llama/Llama-2-7b-hf", "full", {}, gpus=1, strategy="zero3", offload="all"))
    assert term(est, "optimizer") == 0 and term(est, "weights") == 0
    assert est.host_bytes == pytest.approx(6_738_415_616 * (12 + 2))


def test_stages_hold_their_models():
    dpo_full = estimate_memory(spec(method="full", opts={}, stage="dpo"))
    assert term(dpo_full, "stage") == N7 * 2  # a frozen bf16 reference
    dpo_lora = estimate_memory(spec(stage="dpo"))
    assert term(dpo_lora, "stage") == 0  # reference = the base with the adapter off
    sft = estimate_memory(spec())
    assert term(dpo_lora, "logits") == 2 * term(sft, "logits")  # chosen + rejected
    ppo = estimate_memory(spec(stage="ppo"))
    assert term(ppo, "stage") > 2 * N7 * 2  # value (trains) + reward models, and a KV cache
    distill = estimate_memory(spec(stage="distill", stage_options={"teacher": "Qwen/Qwen2.5-14B"}))
    assert term(distill, "stage") == resolve_arch("Qwen/Qwen2.5-14B").n_params * 2


def test_peak_is_the_largest_moment():
    est = estimate_memory(spec(batch_size=2, max_length=1024))
    assert est.peak_bytes == max(est.phases.values())
    assert est.peak_phase == "backward start"
    full = estimate_memory(spec("Qwen/Qwen2.5-0.5B", "full", {}, batch_size=1, max_length=64))
    assert full.peak_phase == "optimizer step"  # a short batch: states and gradients dominate


# ---- the seeds' figures ----------------------------------------------------------------------------------
def test_seed_7b_qlora_at_2048_batch_4_fits_16_gb():
    """Seed 004: QLoRA brings a 7B fine-tune to 10-16 GB (Llama-2-7B, 32k vocabulary, with
    gradient checkpointing as the QLoRA recipe uses)."""
    s = spec("meta-llama/Llama-2-7b-hf", "lora", {"r": 16, "quantize": "nf4"}, batch_size=4, max_length=2048,
             gradient_checkpointing=True, optimizer="paged_adamw_8bit")
    est = estimate_memory(s)
    assert est.device_need_bytes <= 16 * GB
    assert est.peak_bytes >= 8 * GB  # not trivially small either


def test_seed_7b_full_fp32_does_not_fit_one_80gb_gpu():
    """Seed 002: full fine-tuning of a 7B in FP32 needs ~120 GB (4×A100 80G)."""
    est = estimate_memory(spec("meta-llama/Llama-2-7b-hf", "full", {}, precision="fp32", batch_size=1,
                               max_length=512))
    assert est.device_need_bytes > 80 * GB
    assert 100 * GB < est.peak_bytes < 140 * GB  # 16 B/param of model states + activations


def test_seed_65b_qlora_fits_one_48gb_gpu():
    """QLoRA paper: a 65B model fine-tuned on one 48 GB GPU (short sequences, checkpointing)."""
    s = spec("meta-llama/Llama-3.1-70B", "lora", {"r": 16, "quantize": "nf4"}, batch_size=1, max_length=512,
             gradient_checkpointing=True, optimizer="paged_adamw_8bit")
    est = estimate_memory(s)
    weights_65b = est.term("weights") * 65.2 / 70.55
    assert weights_65b + (est.peak_bytes - est.term("weights")) < 48 * GB


# ---- a CPU computing in bf16 (precision auto with AVX512-BF16 / AMX) -------------------------------------
def small_cpu(method="lora", opts=None, **kw):
    from danlu.train.fused_ce import loss_chunk

    kw.setdefault("batch_size", 8)
    kw.setdefault("max_length", 512)
    return spec("builtin:small", method, opts if opts is not None else {"r": 8}, device="cpu", precision="bf16",
                fused_loss=True, loss_chunk=loss_chunk(8192), **kw)


def test_cpu_bf16_stores_a_frozen_base_in_bf16():
    """As danlu.models.load.storage_dtype: frozen base bf16; trained (full) or quantised fp32."""
    assert term(estimate_memory(spec(device="cpu", precision="bf16")), "weights") == N7 * 2
    assert term(estimate_memory(spec(method="full", opts={}, device="cpu", precision="bf16")), "weights") == N7 * 4
    q = estimate_memory(spec(opts={"r": 16, "quantize": "nf4"}, device="cpu", precision="bf16"))
    assert term(q, "weights") == pytest.approx(LINEAR7 * (0.5 + 1 / 64 + 4 / (64 * 256)) + (N7 - LINEAR7) * 4)


def test_cpu_chunked_loss_by_hand():
    """builtin:small (V = 8192, d = 256), chunk 2048 tokens: one chunk = fp32 logits + logsumexp's
    shifted copy (8 B); two or more = 12 B (the previous chunk's buffers still referenced); plus the
    output layer's input gathered, its valid rows and their gradient (3 × tokens × d, bf16 stream).
    QLoRA's fp32 output layer: an fp32 stream and a bf16 cast of the layer per matmul."""
    from danlu.plan.estimate import fused_loss_bytes, numerics

    V, d = 8192, 256
    one = small_cpu(batch_size=4, max_length=128)
    fwd, _, _ = fused_loss_bytes(one, numerics(one), 512)
    assert fwd == 512 * V * 8 + 3 * 512 * d * 2
    two = small_cpu()
    fwd, bwd, _ = fused_loss_bytes(two, numerics(two), 4096)
    assert fwd == 2048 * V * 12 + 3 * 4096 * d * 2
    assert bwd == 4 * 4096 * d * 2
    q = small_cpu(opts={"r": 8, "quantize": "nf4"})
    fwd, _, _ = fused_loss_bytes(q, numerics(q), 4096)
    assert fwd == 2048 * V * 12 + 2 * V * d + 3 * 4096 * d * 4


def test_cpu_autocast_copies_of_fp32_weights():
    """LoRA: a bf16 copy of every LoRA matrix (2 B × trainable); QLoRA also its fp32 output layer."""
    lora = small_cpu()
    assert term(estimate_memory(lora), "autocast") == 2 * lora.shape.trainable
    q = small_cpu(opts={"r": 8, "quantize": "nf4"})
    assert term(estimate_memory(q), "autocast") == 2 * q.shape.trainable + 2 * 8192 * 256
    assert term(estimate_memory(spec(device="cpu", precision="fp32")), "autocast") == 0  # no autocast


def test_cpu_runtime_and_allocator_terms_come_from_the_calibration():
    from danlu.plan.activations import activation_bytes
    from danlu.plan.calibration import calibration
    from danlu.plan.estimate import numerics

    cal = calibration()
    s = small_cpu()
    est = estimate_memory(s)
    tokenizer = cal.cpu_tokenizer_bytes_per_vocab * s.arch.vocab
    assert term(est, "runtime") == cal.cpu_runtime_bytes + tokenizer  # no dataset counted
    act = activation_bytes(s.arch, s.shape, numerics(s), batch=8, seq=512, checkpointing=False)
    assert term(est, "allocator") == pytest.approx(cal.cpu_allocator_retention * act.blocks)
    assert 0 < cal.cpu_allocator_retention < 1
    ckpt = estimate_memory(small_cpu(gradient_checkpointing=True))
    assert term(ckpt, "allocator") == term(est, "allocator")  # the forward makes the same tensors
    assert term(estimate_memory(spec()), "allocator") == 0  # GPU: the caching allocator, not glibc
    with_data = estimate_memory(small_cpu(dataset_tokens=10_000))
    assert term(with_data, "runtime") == cal.cpu_runtime_bytes + tokenizer + 10_000 * cal.cpu_bytes_per_dataset_token
