"""The activation walk against what autograd really saves: every tensor an op saves for
backward is caught with `saved_tensors_hooks` (deduplicated by storage, parameters excluded)
on builtin models, for each method — danlu's (full, LoRA, QLoRA, DoRA) and PEFT's IA3, prefix
and prompt tuning applied directly (their danlu methods land separately)."""

from __future__ import annotations

import pytest
import torch

from danlu.plan.activations import Numerics, activation_bytes
from danlu.plan.arch import resolve_arch
from danlu.plan.methods import method_shape

CPU = Numerics(device="cpu", autocast=False, stream=4, act=4, mask=4, attn="sdpa", mask_4d=True)
B, L = 2, 64


def _saved_bytes(model, *, packed: bool, bf16: bool = False, varlen: bool = False) -> int:
    ids = torch.randint(0, 8000, (B, L), generator=torch.Generator().manual_seed(0))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if varlen:  # danlu's VarlenCollator (danlu_varlen_sdpa on a CPU): one padding-free row, no mask
            cu = torch.arange(0, B * L + 1, L, dtype=torch.int32)
            model(input_ids=ids.reshape(1, B * L), position_ids=torch.arange(L).repeat(B)[None], use_cache=False,
                  cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=L, max_length_k=L)
        elif packed:  # danlu's packing collator: a (B, 1, L, L) block mask and restarted positions
            mask = torch.ones(B, 1, L, L, dtype=torch.bool).tril()
            model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(L).expand(B, L), use_cache=False)
        else:  # the padding collator: a 2D mask with a padded row
            mask = torch.ones(B, L, dtype=torch.long)
            mask[-1, -5:] = 0
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    return sum(seen.values())


def _predicted(name: str, method: str, opts: dict) -> float:
    arch = resolve_arch(name)
    act = activation_bytes(arch, method_shape(arch, method, opts), CPU, batch=B, seq=L, checkpointing=False)
    return act.blocks + act.head


CASES = [  # (model, method, kwargs of danlu's method, planner options)
    ("builtin:tiny", "full", {}, {}),
    ("builtin:small", "full", {}, {}),
    ("builtin:tiny-llama", "full", {}, {}),
    ("builtin:tiny", "lora", {"r": 8}, {"r": 8}),
    ("builtin:small", "lora", {"r": 8}, {"r": 8}),
    ("builtin:small", "lora", {"r": 8, "lora_dropout": 0.0}, {"r": 8, "dropout": 0.0}),
    ("builtin:small", "lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]},
     {"r": 4, "target_modules": ["q_proj", "v_proj"]}),
    ("builtin:small", "lora", {"name": "qlora", "r": 8}, {"r": 8, "quantize": "nf4"}),
]


@pytest.mark.parametrize("model,method,kwargs,opts", CASES)
def test_danlu_methods_save_what_the_walk_says(model, method, kwargs, opts):
    from danlu.methods.base import MethodContext
    from danlu.methods.full import Full
    from danlu.methods.lora import Lora
    from danlu.models.load import load_model

    if opts.get("quantize"):
        pytest.importorskip("bitsandbytes")
    m = Full() if method == "full" else Lora(**kwargs)
    torch.manual_seed(0)
    model_ = m.apply(load_model(model, dtype=torch.float32, **m.load_kwargs()), MethodContext())
    model_.train()
    measured = _saved_bytes(model_, packed=True)
    assert _predicted(model, method, opts) == pytest.approx(measured, rel=0.01)


def test_dora_within_ten_percent():
    from danlu.methods.base import MethodContext
    from danlu.methods.lora import Lora
    from danlu.models.load import load_model

    m = Lora(r=8, use_dora=True)
    model = m.apply(load_model("builtin:small", dtype=torch.float32), MethodContext())
    model.train()
    assert _predicted("builtin:small", "lora", {"r": 8, "use_dora": True}) == pytest.approx(
        _saved_bytes(model, packed=True), rel=0.10)


@pytest.mark.parametrize("kind", ["ia3", "prefix", "prompt"])
def test_peft_virtual_token_and_scaling_methods(kind):
    from peft import IA3Config, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    from danlu.models.load import load_model

    config = {"ia3": IA3Config(task_type="CAUSAL_LM"),
              "prefix": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16),
              "prompt": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16)}[kind]
    model = "builtin:small"
    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(model, dtype=torch.float32), config)
    peft_model.train()
    opts = {} if kind == "ia3" else {"num_virtual_tokens": 16}
    arch = resolve_arch(model)
    assert method_shape(arch, kind, opts).trainable == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    measured = _saved_bytes(peft_model, packed=kind == "ia3")  # virtual-token methods use padding
    assert _predicted(model, kind, opts) == pytest.approx(measured, rel=0.02)


BF16_CASES = [{"name": "full"}, {"name": "lora", "r": 8}, {"name": "qlora", "r": 8},
              {"name": "prefix", "num_virtual_tokens": 16}, {"name": "ia3"}]


@pytest.mark.parametrize("method", BF16_CASES, ids=lambda m: m["name"])
def test_cpu_bf16_autocast_saves_what_the_walk_says(method):
    """A CPU that computes in bf16 (precision auto with AVX512-BF16 / AMX): the base stored as
    `danlu train` stores it (bf16 when frozen; fp32 when trained or quantised), the forward under
    bf16 autocast. What autograd saves = the walk's activations + autocast's bf16 copies of fp32
    weights (trained weights; LoRA matrices; QLoRA's fp32 output layer). QLoRA's base linears
    return fp32 (bitsandbytes computes in fp32 on a CPU), so its MLP saves fp32 tensors."""
    from danlu.config.load import load_config_dict
    from danlu.methods.base import MethodContext
    from danlu.models.load import load_model, storage_dtype
    from danlu.plan.estimate import autocast_cache, numerics
    from danlu.plan.spec import spec_from_config

    if method["name"] == "qlora":
        pytest.importorskip("bitsandbytes")
    cfg = load_config_dict({"model": {"name_or_path": "builtin:small"}, "data": {"train": "unused.jsonl"},
                            "method": method, "train": {"batch_size": B, "max_length": L}})
    m = cfg.method
    kwargs = m.load_kwargs()
    dtype = storage_dtype("auto", trains_base=m.artefact == "model", precision="bf16",
                          quantized="quantization_config" in kwargs)
    spec = spec_from_config(cfg, device="cpu", precision="bf16")
    num = numerics(spec)
    varlen = spec.attn == "danlu_varlen_sdpa"  # what danlu train runs for packed rows on a CPU
    assert varlen == (type(m).supports_packing and spec.packing)
    if varlen:
        from danlu.models.varlen_sdpa import register

        kwargs["attn_implementation"] = register()
    torch.manual_seed(0)
    model = m.apply(load_model("builtin:small", dtype=dtype, **kwargs), MethodContext())
    model.train()
    with m.training_forward_context(model, autocast=True):  # the trainer's forward (LoRA inputs uncast)
        measured = _saved_bytes(model, packed=type(m).supports_packing, bf16=True, varlen=varlen)
    assert num.autocast and num.stream == (2 if dtype == torch.bfloat16 else 4)
    act = activation_bytes(spec.arch, spec.shape, num, batch=B, seq=L, checkpointing=False)
    assert act.blocks + act.head + autocast_cache(spec, num) == pytest.approx(measured, rel=0.01)


def test_gradient_checkpointing_keeps_block_inputs_and_one_block():
    arch = resolve_arch("builtin:small")
    shape = method_shape(arch, "full", {})
    plain = activation_bytes(arch, shape, CPU, batch=B, seq=L, checkpointing=False)
    ckpt = activation_bytes(arch, shape, CPU, batch=B, seq=L, checkpointing=True)
    assert ckpt.blocks == arch.layers * B * L * arch.hidden * 4  # one fp32 hidden state per block
    assert ckpt.recompute == max(plain.per_block)
    assert ckpt.blocks + ckpt.recompute < plain.blocks
