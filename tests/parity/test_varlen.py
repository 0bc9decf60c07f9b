"""Padding-free varlen packing (VarlenCollator): per-sample losses and gradients of one packed
row equal those of the samples run one by one.

On CPU there is no flash-attention, so the model runs a reference varlen attention registered
with transformers' AttentionInterface: plain SDPA over each [cu_seq_lens[i], cu_seq_lens[i+1])
segment. This proves the data path flash-attention relies on — the keys reach every attention
call through the model (and PEFT), positions restart per sample, labels and shift labels line
up — while tests/gpu/test_varlen_flash.py runs the real flash-attention kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from danlu.data.collate import PackingCollator, PaddingCollator, VarlenCollator, packing_collator
from danlu.train.loss import causal_lm_loss
from tests.parity.test_packing import _features  # the same samples as the 4D-mask packing parity

REFERENCE = "danlu_varlen_reference"
calls = {"n": 0}


def varlen_reference(module, query, key, value, attention_mask, scaling=None, cu_seq_lens_q=None,
                     cu_seq_lens_k=None, **kwargs):
    """query (1, H, N, D), key/value (1, H_kv, N, D); causal attention within each segment."""
    assert attention_mask is None and cu_seq_lens_q is not None  # the varlen batch reached attention
    calls["n"] += 1
    bounds = cu_seq_lens_q.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True,
                                           scale=scaling, enable_gqa=True)
            for s, e in zip(bounds[:-1], bounds[1:])]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None  # (1, N, H, D)


@pytest.fixture(scope="module", autouse=True)
def _register():
    from transformers import AttentionInterface

    AttentionInterface.register(REFERENCE, varlen_reference)


def _model(lora: bool = False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = Qwen2ForCausalLM(cfg).float()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return model


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_varlen_row_equals_samples_one_by_one(lora):
    feats = _features(6)
    model = _model(lora)
    total = sum(sum(1 for x in f["labels"][1:] if x != -100) for f in feats)
    model.zero_grad()
    ref = 0.0
    for f in feats:  # reference: each sample alone with sdpa, no padding
        loss, _, _ = causal_lm_loss(model, PaddingCollator(0)([f]), num_items_in_batch=total)
        loss.backward()
        ref += loss.item()
    ref_grad = _grads(model).clone()
    model.zero_grad()
    model.set_attn_implementation(REFERENCE)
    try:
        batch = VarlenCollator()([dict(f) for f in feats])
        before = calls["n"]
        loss, n, _ = causal_lm_loss(model, batch, num_items_in_batch=total)
        loss.backward()
    finally:
        model.set_attn_implementation("sdpa")
    assert calls["n"] - before == 2  # once per layer: the varlen keys reached both attention calls
    assert int(n) == total
    assert abs(loss.item() - ref) < 1e-5
    torch.testing.assert_close(_grads(model), ref_grad, rtol=1e-4, atol=1e-6)


def test_packing_collator_follows_the_attention_kernel():
    model = _model()
    assert isinstance(packing_collator(0, 64, model), PackingCollator)  # sdpa: 4D mask
    model.config._attn_implementation = "flash_attention_2"  # only the name is read
    assert isinstance(packing_collator(0, 64, model), VarlenCollator)
    model.config._attn_implementation = "danlu_varlen_sdpa"  # CPU packing (models/varlen_sdpa.py)
    assert isinstance(packing_collator(0, 64, model), VarlenCollator)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_danlu_varlen_sdpa_equals_the_4d_mask_packing(lora):
    """The attention danlu loads for packed CPU runs: loss and gradients of one padding-free row
    equal those of the block-diagonal-mask rows it replaces (and a padded batch falls back to sdpa)."""
    from danlu.models.varlen_sdpa import register

    feats = _features(6)
    model = _model(lora)
    total = sum(sum(1 for x in f["labels"][1:] if x != -100) for f in feats)
    model.zero_grad()
    ref, _, _ = causal_lm_loss(model, PackingCollator(0, 64)([dict(f) for f in feats]), num_items_in_batch=total)
    ref.backward()
    ref_grad = _grads(model).clone()
    model.zero_grad()
    model.set_attn_implementation(register())
    try:
        loss, n, _ = causal_lm_loss(model, VarlenCollator()([dict(f) for f in feats]), num_items_in_batch=total)
        loss.backward()
        padded, _, _ = causal_lm_loss(model, PaddingCollator(0)([dict(f) for f in feats]), num_items_in_batch=total)
    finally:
        model.set_attn_implementation("sdpa")
    assert int(n) == total
    assert abs(loss.item() - ref.item()) < 1e-5
    torch.testing.assert_close(_grads(model), ref_grad, rtol=1e-4, atol=1e-6)
    assert abs(padded.item() - ref.item()) < 1e-5  # no cu_seq_lens: transformers' sdpa with the padding mask
