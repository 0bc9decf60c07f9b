"""The PPO policy side on builtin:tiny: log-probabilities of a left-padded batch equal those of
each row alone (position ids follow the mask), the reference is the base with the adapter off,
and the value head starts at zero."""

from __future__ import annotations

import pytest
import torch

from danlu.stages.rl.policy import Reference, ValueHead, answer_forward, hidden_size, sample_answers


@pytest.fixture(scope="module")
def tiny():
    from danlu.models.load import load_model, load_tokenizer

    torch.manual_seed(0)
    return load_model("builtin:tiny", dtype=torch.float32).eval(), load_tokenizer("builtin:tiny")


def _left_pad(rows, pad):
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_left_padded_batch_matches_each_row_alone(tiny):
    model, tok = tiny
    prompts = [tok("Is there a free trial?")["input_ids"], tok("Hi")["input_ids"]]
    ids, mask = _left_pad(prompts, tok.pad_token_id)
    torch.manual_seed(1)
    answers, amask = sample_answers(model, ids, mask, max_new_tokens=5, temperature=1.0, stop_ids=[2],
                                    pad_id=tok.pad_token_id)
    assert answers.shape[0] == 2 and amask[:, 0].all()
    seq, attn = torch.cat([ids, answers], 1), torch.cat([mask, amask], 1)
    head = ValueHead(hidden_size(model))
    with torch.no_grad():
        logp, values, _ = answer_forward(model, seq, attn, ids.shape[1], 1.0, value_head=head)
        for row, prompt in enumerate(prompts):
            n = int(amask[row].sum())
            alone = torch.cat([torch.tensor(prompt), answers[row, :n]]).unsqueeze(0)
            lp, _, _ = answer_forward(model, alone, torch.ones_like(alone), len(prompt), 1.0)
            assert torch.allclose(logp[row, :n], lp[0], atol=1e-4)
    assert values.shape == logp.shape and values.abs().max().item() == 0.0  # zero-initialised head


def test_reference_is_the_base_with_the_adapter_off(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    policy = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights="gaussian"))
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # make the adapter change the outputs
    ref = Reference(policy)
    assert ref.uses_adapter and ref.copy is None  # no second copy in memory
    ids = torch.tensor([tok("How much is the Team plan?")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        pol, _, _ = answer_forward(policy, ids, mask, 3, 1.0)
        with policy.disable_adapter():
            base, _, _ = answer_forward(policy, ids, mask, 3, 1.0)
    ref_logp = ref.logprobs(policy, ids, mask, 3, 1.0)
    assert torch.allclose(ref_logp, base) and not torch.allclose(ref_logp, pol, atol=1e-3)
    policy.unload()


def test_reference_of_a_full_model_is_a_frozen_copy(tiny):
    model, _ = tiny
    ref = Reference(model)
    assert not ref.uses_adapter and ref.copy is not model
    assert not any(p.requires_grad for p in ref.copy.parameters())
