"""Issue 24's LoRA levers on CPU: FastDropout (a cheaper random mask, same distribution) and the
training forward that keeps each adapter input in the autocast dtype (no fp32 round trip)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from danlu.methods.base import MethodContext
from danlu.methods.fast_dropout import FastDropout, keep_mask, use_fast_dropout
from danlu.methods.lora import Lora


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_keep_mask_keeps_one_minus_p(p):
    torch.manual_seed(0)
    keep = keep_mask((400, 1000), p)
    assert keep.dtype == torch.bool and keep.shape == (400, 1000)
    assert keep.float().mean().item() == pytest.approx(1 - p, abs=0.003)  # 4e5 draws: std 0.0008 at p 0.5


def test_keep_mask_is_seeded_by_torch_manual_seed_and_odd_sizes_work():
    torch.manual_seed(1)
    a = keep_mask((3, 7), 0.3)
    torch.manual_seed(1)
    assert torch.equal(a, keep_mask((3, 7), 0.3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_scales_kept_values_and_backward_uses_the_mask(dtype):
    drop = FastDropout(0.2).train()
    x = torch.ones(200, 300, dtype=dtype, requires_grad=True)
    y = drop(x)
    kept = y != 0
    expected = torch.tensor(1 / 0.8, dtype=dtype)  # the scaled mask in x's dtype, as nn.Dropout makes it
    assert y.dtype == dtype and torch.all(y[kept] == expected)
    assert kept.float().mean().item() == pytest.approx(0.8, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)


def test_fast_dropout_is_identity_in_eval_and_at_p_zero():
    x = torch.randn(4, 5)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_lora_swaps_peft_dropouts_and_saves_the_same_adapter_keys():
    from peft import get_peft_model_state_dict

    from danlu.models.load import load_model

    model = Lora.model_validate({"name": "lora", "r": 4, "dropout": 0.1}).apply(
        load_model("builtin:tiny", dtype=torch.float32), MethodContext())
    drops = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
             for d in m.lora_dropout.values()]
    assert drops and all(type(d) is FastDropout and d.p == 0.1 for d in drops)
    assert use_fast_dropout(model) == 0  # nothing left to swap
    assert all("lora_A" in k or "lora_B" in k for k in get_peft_model_state_dict(model))


def _bf16_lora_model():
    from danlu.models.load import load_model

    method = Lora.model_validate({"name": "lora", "r": 4, "dropout": 0.0, "init": "gaussian"})
    model = method.apply(load_model("builtin:tiny", dtype=torch.bfloat16), MethodContext())
    for name, p in model.named_parameters():  # as the Trainer sees it: fp32 adapters on a bf16 base
        if p.requires_grad:
            p.data = p.data.float()
    return method, model


def test_training_forward_under_autocast_skips_the_fp32_cast_and_matches():
    method, model = _bf16_lora_model()
    ids = torch.randint(0, 100, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(input_ids=ids).logits
        with method.training_forward_context(model, autocast=True), torch.profiler.profile() as prof:
            out = model(input_ids=ids).logits
    n_casts = sum(e.name == "aten::_to_copy" for e in prof.events())
    assert torch.allclose(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.profiler.profile() as prof_ref:
        model(input_ids=ids)
    n_ref = sum(e.name == "aten::_to_copy" for e in prof_ref.events())
    assert n_casts < n_ref  # PEFT's cast of each adapter input (and autocast's cast back) are gone
    for module in model.modules():  # restored afterwards
        if hasattr(module, "cast_input_dtype_enabled"):
            assert module.cast_input_dtype_enabled


def test_training_forward_context_is_a_no_op_without_autocast_and_for_dora():
    method, model = _bf16_lora_model()
    with method.training_forward_context(model, autocast=False):
        assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))
    dora = Lora.model_validate({"name": "dora"})
    with dora.training_forward_context(model, autocast=True):
        assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_bf16_lora_trains_with_and_without_gradient_checkpointing(tmp_path, checkpointing):
    """The autocast forward without PEFT's casts is skipped under gradient checkpointing (its
    recompute runs outside the context; a recomputed tensor of another dtype would be an error)."""
    from danlu.models.load import cpu_has_native_bf16
    from tests.unit.methods.harness import config, train

    if not cpu_has_native_bf16():
        pytest.skip("bf16 autocast on this CPU is emulated (slow); the lever needs autocast")
    cfg = config(tmp_path, {"name": "lora", "r": 4, "dropout": 0.1}, steps=2, precision="bf16",
                 gradient_checkpointing=checkpointing)
    trained = train(cfg)
    assert len(trained.losses) == 2 and all(l == l for l in trained.losses)  # two finite steps


def test_fast_dropout_is_found_and_switched_off_as_nn_dropout():
    """TRL's preference trainers disable dropout by type (`isinstance(m, nn.Dropout)`: p = 0): the
    fast mask must obey, or DPO's first loss is no longer log 2 (policy ≠ reference)."""
    import torch
    from trl.trainer.utils import disable_dropout_in_model

    from danlu.methods.fast_dropout import FastDropout

    layer = torch.nn.Sequential(FastDropout(0.5)).train()
    disable_dropout_in_model(layer)
    x = torch.ones(64, 64)
    assert torch.equal(layer(x), x)
