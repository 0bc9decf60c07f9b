"""One table over every method on builtin models: 20 steps on the same batch lower the loss;
exactly the intended parameters require grad and change, every frozen tensor is bit-identical
after training; the artefact reloaded in a fresh process gives identical logits; methods that
merge give the adapter model's logits within 1e-5 (fp32); a quantised base stays in 4 (8)
bits through training. Parity with a hand-written PEFT loop: tests/parity/test_lora_parity.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from tests.unit.methods.harness import config, reload_in_fresh_process, train


def lora_weights(n: str) -> bool:
    return bool(re.search(r"\.lora_(A|B|magnitude_vector)\.", n))


@dataclass
class Case:
    id: str
    method: dict
    lr: float
    trains: Callable[[str], bool]  # the parameters meant to train, by name
    model: str = "builtin:tiny"
    bits: int = 32  # how the base's linear weights are held
    reload_exact: bool = True  # False: a converted adapter, equal within 1e-5
    may_stay: Callable[[str], bool] = lambda n: False  # trainable tensors allowed to end unchanged


CASES = [
    Case("full", {"name": "full"}, 2e-3, lambda n: True),
    Case("freeze", {"name": "freeze", "layers": 1, "modules": ["norm"]}, 2e-3,
         lambda n: n.startswith("model.layers.1.") or n == "model.norm.weight"),
    Case("lora", {"name": "lora", "r": 8}, 1e-2, lora_weights, model="builtin:tiny-llama"),
    Case("qlora", {"name": "qlora", "r": 8}, 1e-2, lora_weights, bits=4),
    Case("lora-int8", {"name": "lora", "r": 8, "quantize": "int8"}, 1e-2, lora_weights, bits=8),
    # DoRA's magnitudes, rsLoRA's scaling, a gaussian A and LoRA+'s groups in one run
    Case("dora+rslora+gaussian+lora_plus", {"name": "dora", "r": 8, "use_rslora": True, "init": "gaussian",
                                            "lora_plus_ratio": 4}, 1e-2, lora_weights),
    Case("pissa", {"name": "pissa", "r": 8}, 1e-2, lora_weights, reload_exact=False),
    Case("olora", {"name": "lora", "r": 8, "init": "olora"}, 1e-2, lora_weights, reload_exact=False),
    # AdaLoRA prunes singular values to zero: a lora_E may end where it started (zeros); the
    # artefact keeps only the surviving ranks, so the reload sums in another order (within 1e-5)
    Case("adalora", {"name": "adalora"}, 1e-2, lambda n: bool(re.search(r"\.lora_(A|B|E)\.", n)),
         may_stay=lambda n: ".lora_E." in n, reload_exact=False),
    Case("ia3", {"name": "ia3"}, 3e-2, lambda n: ".ia3_l." in n),
    Case("prefix", {"name": "prefix", "num_virtual_tokens": 8}, 3e-2, lambda n: "prompt_encoder" in n),
    Case("prompt", {"name": "prompt", "num_virtual_tokens": 8}, 3e-2, lambda n: "prompt_encoder" in n),
    Case("p_tuning", {"name": "p_tuning", "num_virtual_tokens": 8}, 1e-2, lambda n: "prompt_encoder" in n),
    Case("adapter", {"name": "adapter", "bottleneck": 16}, 1e-2, lambda n: ".adapter." in n),
    Case("bitfit", {"name": "bitfit"}, 3e-2, lambda n: n.endswith(".bias")),
]
IDS = [c.id for c in CASES]

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(case: Case):
        if case.id not in cache:
            cfg = config(tmp_path_factory.mktemp(case.id), case.method, model=case.model, lr=case.lr)
            cache[case.id] = train(cfg)
        return cache[case.id]

    return get


@pytest.fixture(scope="module")
def reloaded(runs, tmp_path_factory):
    trained = {c.id: runs(c) for c in CASES}
    return reload_in_fresh_process(trained, tmp_path_factory.mktemp("reload") / "logits.safetensors")


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bytes (a packed 4-bit weight read as float can hold NaN patterns, and NaN != NaN)."""
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.contiguous().view(torch.uint8),
                                                                     b.contiguous().view(torch.uint8))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_twenty_steps_lower_the_loss(runs, case):
    losses = runs(case).losses
    assert len(losses) == 20
    assert losses[-1] < 0.97 * losses[0], losses


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_only_intended_parameters_train_and_change(runs, case):
    t = runs(case)
    intended = {n for n in t.before if case.trains(n)}
    assert intended, "the case names no parameters"
    assert t.requires_grad == intended, sorted(t.requires_grad ^ intended)[:5]
    frozen_changed = [n for n in t.before if n not in intended and not bit_equal(t.before[n], t.after[n])]
    assert not frozen_changed, frozen_changed[:5]
    unchanged = [n for n in intended if bit_equal(t.before[n], t.after[n]) and not case.may_stay(n)]
    assert not unchanged, unchanged[:5]
    assert t.params["trainable_params"] == sum(t.before[n].numel() for n in intended)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reload_in_fresh_process_gives_identical_logits(runs, reloaded, case):
    t = runs(case)
    again = reloaded[case.id]
    if case.reload_exact:
        assert torch.equal(t.logits, again)
    else:  # PiSSA/OLoRA: saved as a plain rank-2r LoRA on the original base (portable); AdaLoRA: pruned
        torch.testing.assert_close(again, t.logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in ("full", "freeze")], ids=lambda c: c.id)
def test_merge_matches_adapter_or_says_why(runs, reloaded, case):
    t = runs(case)
    if not t.method.can_merge:
        assert f"{case.id}.merged" not in reloaded
        from danlu.errors import UserError
        from danlu.infer.load import load_for_inference

        with pytest.raises(UserError, match="cannot be merged"):
            load_for_inference(str(t.run_dir), device="cpu", merge=True)
        return
    merged = reloaded[f"{case.id}.merged"]
    # LLM.int8 also rounds the activations to 8 bits at every matmul, so an int8 base differs
    # from its dequantised fp32 merge by that rounding (0.15 in logits, measured); the merge
    # itself is exact against the dequantised base (test_lora.py)
    tol = 0.3 if case.id == "lora-int8" else 1e-5
    torch.testing.assert_close(merged, reloaded[case.id], rtol=0, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_base_linear_weights_are_held_in_the_bits_asked(runs, case):
    """QLoRA: after 20 steps the blocks' linear weights are still packed 4-bit values (plus
    their quantisation constants); the figure is printed (pytest -s) for the closing note."""
    t = runs(case)
    held = t.base_bytes
    kind = {4: "Linear4bit", 8: "Linear8bitLt", 32: "Linear"}[case.bits]
    assert t.linear_kinds == {kind}, t.linear_kinds
    assert held["packed_weight_bytes"] * 32 == held["fp32_bytes"] * case.bits  # exactly `bits` per value
    if case.bits < 32:
        # with the constants (absmax per block, a 256-entry code table per layer that weighs a lot
        # on 64-wide layers): measured 2.9x under bf16 here, 3.7x on builtin:mini (bench)
        assert held["linear_weight_bytes"] < held["bf16_bytes"] / (2.5 if case.bits == 4 else 1.8)
        print(f"{case.id}: base linear weights {held['linear_weight_bytes']:,} B in memory vs "
              f"fp32 {held['fp32_bytes']:,} B ({held['fp32_bytes'] / held['linear_weight_bytes']:.2f}x smaller), "
              f"bf16 {held['bf16_bytes']:,} B ({held['bf16_bytes'] / held['linear_weight_bytes']:.2f}x)")
