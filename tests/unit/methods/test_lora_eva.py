"""LoRA's data-aware initialisation `init: eva` (PEFT's EVA): the method asks the run for a few
training batches at set-up (MethodContext.sample_batches) and sets each A from the SVD of its
module's inputs. A differs from the default init, is the same every time, and training from it
lowers the loss."""

from __future__ import annotations

import pytest
import torch

from danlu.errors import DanluError
from danlu.methods.base import MethodContext
from danlu.methods.lora import Lora
from danlu.models.load import load_model


def _batches(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 200, (4, 24), generator=g)
        labels = ids.clone()
        labels[:, :8] = -100  # prompt positions: left out of EVA's SVD (label mask)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def _lora(init: str, source=_batches):
    torch.manual_seed(0)
    method = Lora(r=4, init=init, eva_batches=3, dropout=0.0)
    return method.apply(load_model("builtin:tiny", dtype=torch.float32), MethodContext(batch_source=source))


def _a(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}


@pytest.fixture(scope="module")
def eva_model():
    torch.set_num_threads(1)
    return _lora("eva")


def test_eva_sets_a_from_the_data_and_is_deterministic(eva_model):
    eva, default, again = _a(eva_model), _a(_lora("default")), _a(_lora("eva"))
    assert eva.keys() == default.keys() and len(eva) > 0
    assert all(not torch.allclose(eva[k], default[k]) for k in eva)  # not PEFT's default init
    assert all(torch.equal(eva[k], again[k]) for k in eva)  # same batches, same A
    a = next(iter(eva.values()))
    assert torch.allclose(a @ a.T, torch.eye(4), atol=1e-4)  # rows: orthonormal singular vectors
    assert all(float(p.detach().abs().max()) == 0 for n, p in eva_model.named_parameters() if "lora_B" in n)


def test_training_from_eva_lowers_the_loss(eva_model):
    model = eva_model
    batch = _batches(1)[0]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses


def test_eva_without_training_batches_says_so():
    with pytest.raises(DanluError, match="training batches"):
        _lora("eva", source=None)


def test_eva_plans_as_plain_lora():
    from danlu.plan.arch import resolve_arch

    arch = resolve_arch("builtin:small")
    assert Lora(r=8, init="eva").memory_shape(arch).trainable == Lora(r=8).memory_shape(arch).trainable


def test_eva_is_refused_for_a_stage_without_plain_rows():
    from danlu.config.load import load_config_dict
    from danlu.errors import ConfigError

    cfg = load_config_dict({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"},
                            "method": {"name": "lora", "init": "eva"}, "stage": "dpo"})
    with pytest.raises(ConfigError, match="init: eva") as err:
        cfg.method.check(cfg)
    assert err.value.where == "method.init"
