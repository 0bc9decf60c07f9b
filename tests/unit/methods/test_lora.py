"""LoRA's options: shorthands, the PEFT config they become, LoRA+ groups, QLoRA's 4-bit base
(bytes held vs fp32/bf16), and the merge of a quantised base (exact against its dequantised
weights)."""

from __future__ import annotations

import pytest
import torch

from danlu.methods.base import MethodContext, count_parameters
from danlu.methods.lora import Lora, base_weight_bytes
from danlu.methods.registry import METHODS



@pytest.mark.parametrize(
    "data, expected",
    [
        ({"name": "qlora"}, {"quantize": "nf4", "double_quant": True}),
        ({"name": "qlora", "quantize": "fp4"}, {"quantize": "fp4"}),  # an explicit option wins
        ({"name": "dora"}, {"use_dora": True}),
        ({"name": "lora_plus"}, {"lora_plus_ratio": 16.0}),
        ({"name": "rslora"}, {"use_rslora": True}),
        ({"name": "pissa"}, {"init": "pissa"}),
        ({"name": "lora", "lora_alpha": 8, "r": 4}, {"lora_alpha": 8.0, "rank": 4}),
        ({"name": "lora", "r": "auto"}, {"rank": 16, "lora_alpha": 32.0}),
    ],
)
def test_shorthands_are_options_of_one_method(data, expected):
    method = METHODS.get(data["name"]).model_validate(data)
    assert isinstance(method, Lora) and method.name == "lora"  # saved configs say lora + options
    for key, value in expected.items():
        assert getattr(method, key) == value


def test_options_reach_the_peft_config():
    method = Lora.model_validate({"name": "lora", "r": 4, "use_dora": True, "use_rslora": True, "init": "gaussian",
                                  "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0})
    config = method.peft_config(MethodContext(), model=None)
    assert (config.r, config.lora_alpha, config.use_dora, config.use_rslora) == (4, 8.0, True, True)
    assert config.init_lora_weights == "gaussian" and set(config.target_modules) == {"q_proj", "v_proj"}


def test_lora_plus_puts_b_in_its_own_group():
    from danlu.models.load import load_model

    method = Lora.model_validate({"name": "lora_plus", "r": 4, "lora_plus_ratio": 8})
    model = method.apply(load_model("builtin:tiny", dtype=torch.float32), MethodContext())
    a_group, b_group = method.optimizer_groups(model, 1e-3, 0.0)
    assert b_group["lr"] == pytest.approx(8e-3) and a_group["lr"] == pytest.approx(1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".lora_B." in names[id(p)] for p in b_group["params"])
    assert all(".lora_A." in names[id(p)] for p in a_group["params"])
    assert len(a_group["params"]) + len(b_group["params"]) == sum(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("quantize, bits", [("nf4", 4), ("fp4", 4), ("int8", 8)])
def test_quantised_base_holds_its_linear_weights_in_few_bits(quantize, bits):
    """The figures: bytes of the blocks' linear weights in memory against fp32 and bf16."""
    from danlu.models.load import load_model

    method = Lora.model_validate({"name": "lora", "quantize": quantize, "r": 4})
    model = load_model("builtin:tiny", dtype=torch.float32, **method.load_kwargs())
    linears = [m for n, m in model.named_modules() if n.endswith(("_proj",))]
    kind = "Linear4bit" if bits == 4 else "Linear8bitLt"
    assert linears and all(type(m).__name__ == kind for m in linears)
    held = base_weight_bytes(model)
    assert held["packed_weight_bytes"] * 32 // bits == held["fp32_bytes"]  # exactly `bits` per value
    assert held["linear_weight_bytes"] < held["bf16_bytes"] / (2.5 if bits == 4 else 1.8)  # constants included
    print(f"{quantize}: {held['linear_weight_bytes']:,} B held vs fp32 {held['fp32_bytes']:,} B "
          f"({held['fp32_bytes'] / held['linear_weight_bytes']:.1f}x) and bf16 {held['bf16_bytes']:,} B")
    peft_model = method.apply(model, MethodContext())
    trainable, total = count_parameters(peft_model)
    plain = Lora.model_validate({"name": "lora", "r": 4}).apply(load_model("builtin:tiny", dtype=torch.float32),
                                                                MethodContext())
    assert (trainable, total) == count_parameters(plain)  # 4-bit weights count as the values they hold


@pytest.mark.parametrize("quantize", ["nf4", "int8"])
def test_merge_of_a_quantised_base_is_exact_against_its_dequantised_weights(quantize):
    """QLoRA merge folds B·A into the dequantised base: equal to the unmerged adapter on that base."""
    import copy

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from danlu.models.load import load_model

    method = Lora.model_validate({"name": "lora", "quantize": quantize, "r": 4, "lora_dropout": 0.0})
    torch.manual_seed(0)
    model = method.apply(load_model("builtin:tiny", dtype=torch.float32, **method.load_kwargs()), MethodContext())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.1)
    state = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    reference = get_peft_model(load_model("builtin:tiny", dtype=torch.float32, **method.load_kwargs()).dequantize(),
                               copy.deepcopy(model.peft_config["default"]))
    set_peft_model_state_dict(reference, state)
    ids = torch.arange(3, 40).unsqueeze(0)
    merged = method.merge(model).eval()
    assert not any("bit" in type(m).__name__ for m in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference.eval()(ids).logits, rtol=0, atol=1e-5)
