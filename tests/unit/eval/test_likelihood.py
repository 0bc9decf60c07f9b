"""Held-out loss projects only the answer positions through the output layer, and gives the loss
of every position's logits; inference hands the output layer a contiguous input (torch's CPU
linear is many times slower on the strided last-position view that generation passes)."""

from __future__ import annotations

import pytest
import torch

import danlu.eval.likelihood as likelihood
from danlu.chat.messages import Conversation
from danlu.infer.generate import generate
from danlu.infer.load import load_for_inference

QA = [("What is the refund window?", "Refunds are accepted within 30 days of purchase."),
      ("退款期限是多久？", "购买后 30 天内可以退款。"),
      ("How many agents does the Starter plan allow?", "Up to 3 agents."),
      ("Do you offer SSO?", "Yes, SSO comes with the Business plan, with SAML and OIDC.")]


@pytest.fixture(scope="module")
def tiny():
    return load_for_inference("builtin:tiny", dtype=torch.float32)


def conversations():
    return [Conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}]) for q, a in QA]


def test_answer_positions_only_give_the_full_logits_loss(tiny, monkeypatch):
    head_inputs = []
    hook = tiny.model.get_output_embeddings().register_forward_hook(lambda m, a, o: head_inputs.append(a[0].shape))
    try:
        fast = likelihood.held_out_loss(tiny, conversations(), batch_size=3)
    finally:
        hook.remove()
    assert head_inputs and all(shape[-2] == 0 for shape in head_inputs), "the model computed logits itself"
    monkeypatch.setattr(likelihood, "_label_hidden", lambda *a: None)  # the path for other output layers
    full = likelihood.held_out_loss(tiny, conversations(), batch_size=3)
    assert fast.tokens == full.tokens > 0
    assert fast.loss == pytest.approx(full.loss, rel=1e-5)
    assert fast.per_sample == pytest.approx(full.per_sample, rel=1e-5)
    assert len({round(x, 4) for x in fast.per_sample}) == len(QA)  # per row, not one mean copied


def test_the_output_layer_sees_a_contiguous_input_when_generating(tiny):
    from danlu.models.load import load_model

    def contiguity(loaded):
        seen = []
        hook = loaded.model.get_output_embeddings().register_forward_pre_hook(
            lambda m, a: seen.append(a[0].is_contiguous()))
        try:
            answers = generate(loaded, [c.messages[:1] for c in conversations()], max_new_tokens=4, batch_size=4)
        finally:
            hook.remove()
        return seen, [a["text"] for a in answers]

    seen, answers = contiguity(tiny)
    assert seen and all(seen)
    plain = type(tiny)(**{**tiny.__dict__, "model": load_model("builtin:tiny", dtype=torch.float32).eval()})
    seen_plain, answers_plain = contiguity(plain)
    assert not all(seen_plain), "generation no longer passes a strided view: the hook may be dropped"
    assert answers == answers_plain
