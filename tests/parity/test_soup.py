"""Merging equals the published formulas: hand-computed linear / task arithmetic / TIES values on
small tensors, DARE's masks reproduced from the seed (and unbiased), averaging identical models
returns the model bit for bit, merged adapters equal the average of the folded models, and (when
mergekit is installed) TIES / linear / task arithmetic equal mergekit's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from danlu.soup import formulas as F
from danlu.soup.run import MergeSpec, run_merge

BASE = torch.tensor([1.0, 1.0, 1.0, 1.0])
TAU1 = torch.tensor([0.5, -0.2, 0.1, -1.0])
TAU2 = torch.tensor([-0.4, 0.3, 0.0, -0.6])


def test_linear_is_the_weighted_mean():
    got = F.linear([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])], weights=[1, 3])
    assert torch.equal(got, torch.tensor([2.5, 5.0]))  # (1·1 + 3·3)/4, (1·2 + 3·6)/4


def test_task_arithmetic():
    got = F.task_arithmetic(torch.tensor([1.0, 1.0]), [torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0])], lam=0.5)
    assert torch.equal(got, torch.tensor([1.5, 1.5]))  # 1 + 0.5·((1, −1) + (0, 2))


def test_trim_keeps_the_largest_magnitudes():
    assert torch.equal(F.trim(TAU2, 0.5), torch.tensor([-0.4, 0.0, 0.0, -0.6]))
    assert torch.equal(F.trim(TAU1, 0.1), torch.tensor([0.0, 0.0, 0.0, -1.0]))  # at least one entry survives


def test_ties_by_hand():
    # trim (density 0.5): τ̂1 = (0.5, 0, 0, −1.0), τ̂2 = (−0.4, 0, 0, −0.6)
    # elect: sgn(τ̂1 + τ̂2) = sgn(0.1, 0, 0, −1.6) = (+, +, +, −)
    # disjoint mean: (0.5 [τ̂2 disagrees], 0, 0, (−1.0 − 0.6)/2)
    got = F.ties(BASE, [BASE + TAU1, BASE + TAU2], density=0.5)
    assert torch.allclose(got, BASE + torch.tensor([0.5, 0.0, 0.0, -0.8]), atol=1e-7)
    # weights 2, 1: elect on (1.0 − 0.4, 0, 0, −2.0 − 0.6); entry 3 = (2·−1.0 + 1·−0.6)/(2 + 1)
    got = F.ties(BASE, [BASE + TAU1, BASE + TAU2], weights=[2, 1], density=0.5, lam=0.5)
    assert torch.allclose(got, BASE + 0.5 * torch.tensor([0.5, 0.0, 0.0, -2.6 / 3]), atol=1e-7)


def _masks(seed, n, shape, density):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=gen) < density for _ in range(n)]


def test_dare_drops_and_rescales_as_published():
    tau = torch.linspace(-1, 1, 50)
    got = F.dare(tau, 0.3, torch.Generator().manual_seed(7))
    (mask,) = _masks(7, 1, tau.shape, 0.3)
    assert torch.equal(got, torch.where(mask, tau / 0.3, torch.zeros_like(tau)))  # survivors × 1/(1 − p)
    draws = torch.stack([F.dare(torch.ones(20000), 0.3, torch.Generator().manual_seed(s)) for s in range(3)])
    assert abs(draws.mean().item() - 1.0) < 0.02  # unbiased: E[δ] = τ
    assert abs((draws != 0).float().mean().item() - 0.3) < 0.01


def test_dare_linear_and_dare_ties_follow_the_masks():
    m1, m2 = _masks(3, 2, BASE.shape, 0.5)
    d1, d2 = torch.where(m1, TAU1 / 0.5, 0.0), torch.where(m2, TAU2 / 0.5, 0.0)
    got = F.dare_linear(BASE, [BASE + TAU1, BASE + TAU2], weights=[1, 2], density=0.5,
                        generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, BASE + d1 + 2 * d2, atol=1e-6)
    got = F.dare_ties(BASE, [BASE + TAU1, BASE + TAU2], density=0.5, generator=torch.Generator().manual_seed(3))
    expected = BASE + F.elect_and_merge(torch.stack([d1, d2]), torch.ones(2, 1))
    assert torch.allclose(got, expected, atol=1e-6)


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("method, copies", [("linear", 2), ("linear", 3), ("ties", 2), ("dare_ties", 2)])
def test_merging_identical_models_returns_the_model(tmp_path, method, copies):
    from danlu.models.builtin import builtin_path

    src = builtin_path("builtin:tiny")
    spec = MergeSpec(models=["builtin:tiny"] * copies, method=method, base="builtin:tiny", density=1.0)
    run_merge(spec, tmp_path / "out")
    a, b = _weights(src), _weights(tmp_path / "out")
    assert set(a) == set(b)
    for k in a:
        if copies == 2:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7), k
    info = json.loads((tmp_path / "out" / "danlu.json").read_text())
    assert info["stage"] == "merge" and info["artefact"] == "model" and info["merge"]["method"] == method


def _adapter(tmp_path: Path, name: str, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) A and B, saved as a danlu artefact."""
    from peft import LoraConfig, get_peft_model

    from danlu.models.load import load_model, load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(load_model("builtin:tiny"), LoraConfig(r=4, target_modules=["q_proj", "down_proj"],
                                                                  init_lora_weights=False))
    out = tmp_path / name
    model.save_pretrained(str(out))
    load_tokenizer("builtin:tiny").save_pretrained(str(out))
    (out / "danlu.json").write_text(json.dumps({"base_model": "builtin:tiny", "artefact": "adapter",
                                                "method": {"name": "lora", "r": 4}, "task": "causal_lm"}))
    return out


def test_merged_adapters_equal_the_mean_of_the_folded_models(tmp_path):
    from danlu.infer.load import load_for_inference

    a, b = _adapter(tmp_path, "a", 1), _adapter(tmp_path, "b", 2)
    run_merge(MergeSpec(models=[str(a), str(b)], method="linear"), tmp_path / "out")
    merged = _weights(tmp_path / "out")
    folded = [load_for_inference(str(p), device="cpu", merge=True).model.state_dict() for p in (a, b)]
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(merged[key], (folded[0][key] + folded[1][key]) / 2, atol=1e-6)
    assert not torch.allclose(folded[0][key], folded[1][key])
    base = _weights(_builtin())
    untouched = "model.layers.0.self_attn.k_proj.weight"  # not a LoRA target: stays the base's
    assert torch.equal(merged[untouched], base[untouched])


def _builtin() -> Path:
    from danlu.models.builtin import builtin_path

    return builtin_path("builtin:tiny")


def test_mergekit_agrees_where_it_implements_the_same_formula(tmp_path):
    """TIES, linear and task arithmetic equal mergekit's (its DARE rescales by an L1 norm, not 1/density)."""
    pytest.importorskip("mergekit")
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions
    from mergekit.merge import run_merge as mergekit_merge

    from danlu.models.load import load_model

    base = str(_builtin())
    for i in (1, 2):
        model = load_model(base)
        gen = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
        model.save_pretrained(str(tmp_path / f"m{i}"))
    for method in ("ties", "linear", "task_arithmetic"):
        config = {"merge_method": method, "dtype": "float32",
                  "models": [{"model": str(tmp_path / f"m{i}"), "parameters": {"weight": w, "density": 0.4}}
                             for i, w in ((1, 0.7), (2, 0.3))]}
        if method != "linear":
            config["base_model"] = base
        mergekit_merge(MergeConfiguration.model_validate(yaml.safe_load(yaml.safe_dump(config))),
                       str(tmp_path / f"mk-{method}"), options=MergeOptions())
        run_merge(MergeSpec(models=[str(tmp_path / "m1"), str(tmp_path / "m2")], method=method,
                            base=base if method != "linear" else None, weights=[0.7, 0.3], density=0.4),
                  tmp_path / f"danlu-{method}")
        theirs, ours = _weights(tmp_path / f"mk-{method}"), _weights(tmp_path / f"danlu-{method}")
        assert max((theirs[k] - ours[k]).abs().max().item() for k in ours) < 1e-6, method
