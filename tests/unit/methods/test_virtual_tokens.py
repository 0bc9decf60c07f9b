"""Virtual-token methods change the sequence length inside the model. danlu's loss on them
must equal PEFT's own (which pads the labels with -100 for the virtual tokens), with right
padding and prompt masking; and they never see packed batches."""

from __future__ import annotations

import pytest
import torch

from danlu.data.collate import PaddingCollator
from danlu.methods.base import MethodContext
from danlu.methods.registry import METHODS
from danlu.train.loss import causal_lm_loss

VIRTUAL = ["prefix", "prompt", "p_tuning"]


def batch():
    """Two samples of different length (right padding), loss on the 'answer' part only."""
    a, b = list(range(10, 30)), list(range(40, 52))
    features = [{"input_ids": a, "labels": [-100] * 8 + a[8:]}, {"input_ids": b, "labels": [-100] * 5 + b[5:]}]
    return PaddingCollator(pad_token_id=0)(features)


@pytest.mark.parametrize("name", VIRTUAL)
def test_loss_equals_peft_own_loss_with_padding_and_masking(name):
    from danlu.models.load import load_model

    method = METHODS.get(name).model_validate({"name": name, "num_virtual_tokens": 6})
    torch.manual_seed(0)
    model = method.apply(load_model("builtin:tiny", dtype=torch.float32), MethodContext()).eval()
    inputs = batch()
    with torch.no_grad():
        reference = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                          labels=inputs["labels"]).loss
        ours, n_tokens, _ = causal_lm_loss(model, dict(inputs), keep_logits=method.supports_logits_to_keep)
    assert int(n_tokens) == (20 - 8) + (12 - 5)  # every answer token is predicted once
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    assert not method.supports_packing
    if not method.supports_logits_to_keep:  # what the flag prevents: positions off by the virtual tokens
        with torch.no_grad():
            wrong, _, _ = causal_lm_loss(model, dict(inputs), keep_logits=True)
        assert abs(float(wrong) - float(reference)) > 1e-3


def test_trainer_pads_instead_of_packing_for_virtual_tokens(tmp_path):
    from danlu.data.collate import PackingCollator, VarlenCollator
    from danlu.train.runner import build
    from tests.unit.methods.harness import config

    # lora packs: varlen rows with flash-attention or on a CPU (danlu_varlen_sdpa), else a 4D mask
    for name, collator in (("prompt", PaddingCollator), ("lora", (PackingCollator, VarlenCollator))):
        cfg = config(tmp_path / name, {"name": name, "r": 4} if name == "lora" else {"name": name}, steps=1)
        assert cfg.data.packing
        ctx, train_ds, _ = build(cfg, run_dir=tmp_path / name, is_main=False)
        trainer = cfg.stage_options().build_trainer(ctx, train_ds, None)
        assert isinstance(trainer.data_collator, collator)
        assert trainer._keep_logits == (name == "lora")
