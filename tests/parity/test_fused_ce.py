"""The chunked linear + cross-entropy equals the plain loss: value and gradients (hidden states,
a trainable output layer, LoRA parameters), through the real model path with a packed batch."""

from __future__ import annotations

import copy

import pytest
import torch

from danlu.data.collate import PackingCollator
from danlu.train.fused_ce import CEWorkspace, OutputCapture, chunked_linear_ce, fused_head_supported
from danlu.train.loss import causal_lm_loss
from tests.parity.test_packing import _features, _model


@pytest.mark.parametrize("chunk", [3, 1024])
def test_chunked_matches_reference(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (10,), generator=g)
    ref = torch.nn.functional.cross_entropy(h @ w.t(), t, reduction="sum") / 7.0
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = chunked_linear_ce(h, w, t, torch.tensor(7.0), chunk=chunk)
    (out * 2).backward()  # an upstream gradient other than 1
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h.grad, 2 * gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad, 2 * gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_workspace_gives_the_same_bits(dtype):
    """Reused chunk buffers (issue 24): bit-equal loss and gradients, over calls of several sizes
    (the last chunk shorter, a later call longer than the buffers), under bf16 autocast too."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(300, 16, generator=g).to(dtype).requires_grad_()
    ws = CEWorkspace()
    for n in (10, 7, 13):
        h = torch.randn(n, 16, generator=g).to(dtype).requires_grad_()
        t = torch.randint(0, 300, (n,), generator=g)
        for autocast in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                got, want = (chunked_linear_ce(h, w, t, 5.0, chunk=4, workspace=x) for x in (ws, None))
                grads = [torch.autograd.grad(o, (h, w)) for o in (got, want)]
            assert torch.equal(got, want)
            assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert ws._bufs, "the workspace was used"


@pytest.mark.parametrize("lora", [False, True])
def test_model_path_matches_plain_loss(lora):
    feats = _features(6)
    base = _model()
    if lora:
        from peft import LoraConfig, get_peft_model

        base = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights="gaussian"))
    twin = copy.deepcopy(base)
    assert fused_head_supported(base)
    batch = PackingCollator(0, 64)([dict(f) for f in feats])
    ref, n_ref, _ = causal_lm_loss(base, dict(batch), 50)
    ref.backward()
    capture = OutputCapture(twin)
    out, n_out, outputs = causal_lm_loss(twin, dict(batch), 50, capture=capture)
    out.backward()
    assert outputs.logits.shape[1] == 0  # no logits were made
    assert int(n_ref) == int(n_out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(base.named_parameters(), twin.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def _gemma3(softcap=None):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=8,
                           max_position_embeddings=256, final_logit_softcapping=softcap)
    return Gemma3ForCausalLM(cfg).float()


def test_gemma3_path_matches_plain_loss():
    """gemma-3's scaled embeddings, sliding window and tied head: the fused loss is exact there."""
    base = _gemma3()
    twin = copy.deepcopy(base)
    assert fused_head_supported(base) and not fused_head_supported(_gemma3(softcap=30.0))
    batch = PackingCollator(0, 64)([dict(f) for f in _features(6)])
    ref, _, _ = causal_lm_loss(base, dict(batch), 50)
    ref.backward()
    out, _, outputs = causal_lm_loss(twin, dict(batch), 50, capture=OutputCapture(twin))
    out.backward()
    assert outputs.logits.shape[1] == 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(base.named_parameters(), twin.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
