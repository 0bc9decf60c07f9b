"""Each PPO term against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from danlu.stages.rl import ppo_core as core


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_masked_mean_and_whiten():
    x, mask = t([[1, 2, 3], [4, 5, 6]]), t([[1, 1, 0], [1, 0, 0]])
    assert core.masked_mean(x, mask).item() == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    assert core.masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 4.0])
    # entries 1, 2, 3: mean 2, unbiased variance 1 → -1, 0, 1; masked entry → 0
    w = core.masked_whiten(t([[1, 2, 3, 100]]), t([[1, 1, 1, 0]]))
    assert w.tolist()[0] == pytest.approx([-1, 0, 1, 0], abs=1e-6)


def test_kl_estimators():
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])
    assert core.kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))  # log .5 − log .25
    # k3 = π_ref/π − 1 − log(π_ref/π) = 0.5 − 1 + log 2
    assert core.kl_per_token(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    same = core.kl_per_token(logp, logp, "k3")
    assert same.item() == 0.0
    assert (core.kl_per_token(t([-3.0, -0.1]), t([-0.2, -2.0]), "k3") >= 0).all()  # k3 never negative
    with pytest.raises(ValueError):
        core.kl_per_token(logp, ref, "k2")


def test_token_rewards_put_score_on_last_token():
    kl = t([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    r = core.token_rewards(t([1.0, -2.0]), kl, mask, kl_coef=0.5)
    # row 0: −0.5·kl, + 1 on token 3; row 1: −0.5·kl, −2 on token 2 (its last), 0 on padding
    assert r.tolist()[0] == pytest.approx([-0.05, -0.1, 0.85])
    assert r.tolist()[1] == pytest.approx([-0.2, -2.25, 0.0])


def test_gae_by_hand():
    rewards, values, mask = t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ2 = 1 − .7 = .3; δ1 = .7 − .6 = .1; δ0 = .6 − .5 = .1
    # A2 = .3; A1 = .1 + .5·.3 = .25; A0 = .1 + .5·.25 = .225; R = A + V
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])
    # λ = γ = 1: A_t = (sum of rewards from t) − V_t, the Monte-Carlo advantage
    adv, _ = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.4, 0.3])
    # discounting: γ = .9, λ = 1 → A0 = .81·1 − .5
    adv, _ = core.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    assert adv[0, 0].item() == pytest.approx(0.81 - 0.5)


def test_gae_ends_the_episode_at_the_mask():
    # the value after the last real token is 0, whatever the padding holds
    adv, ret = core.gae(t([[0, 1, 5]]), t([[0.2, 0.4, 9.0]]), t([[1, 1, 0]]), gamma=1.0, lam=1.0)
    # A1 = 1 − .4 = .6; A0 = (.4 − .2) + .6 = .8; padding 0
    assert adv.tolist()[0] == pytest.approx([0.8, 0.6, 0.0])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 0.0])


def test_clipped_policy_loss_by_hand():
    old = t([0.0, 0.0, 0.0, 0.0])
    logp = torch.log(t([1.5, 0.5, 1.1, 0.5])).requires_grad_(True)  # ratios 1.5, .5, 1.1, .5
    adv, mask = t([1.0, -1.0, 2.0, 1.0]), t([1, 1, 1, 1])
    loss, stats = core.policy_loss(logp, old, adv, mask, cliprange=0.2)
    # token 0: max(−1.5, −1.2) = −1.2 (clip binds); token 1: max(.5, .8) = .8 (clip binds)
    # token 2: −2.2 (inside the range); token 3: max(−.5, −.8) = −.5 (pessimistic: unclipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.2 - 0.5) / 4)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens pass no gradient; others: −A·ρ / 4
    assert logp.grad.tolist() == pytest.approx([0.0, 0.0, -2 * 1.1 / 4, -1 * 0.5 / 4])
    expected_kl = 0.5 * sum(math.log(r) ** 2 for r in (1.5, 0.5, 1.1, 0.5)) / 4
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)


def test_policy_loss_ignores_masked_tokens():
    loss, _ = core.policy_loss(t([[0.1, 5.0]]), t([[0.0, 0.0]]), t([[1.0, 100.0]]), t([[1, 0]]), 0.2)
    assert loss.item() == pytest.approx(-math.exp(0.1))


def test_clipped_value_loss_by_hand():
    values = t([1.0, 0.0]).requires_grad_(True)
    loss, stats = core.value_loss(values, t([0.5, 0.5]), t([2.0, 0.0]), t([1, 1]), cliprange_value=0.2)
    # token 0: clipped value .7 → max((1−2)², (.7−2)²) = 1.69; token 1: clipped .3 → max(0, .09) = .09
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert stats["clipfrac"].item() == pytest.approx(1.0)
    loss.backward()
    assert values.grad.tolist() == [0.0, 0.0]  # both terms bound by the clipped branch, which is constant in V
    unclipped, _ = core.value_loss(t([0.6]), t([0.5]), t([1.0]), t([1]), cliprange_value=0.2)
    assert unclipped.item() == pytest.approx(0.5 * 0.4 ** 2)


def test_completion_mask_stops_after_first_stop_token():
    tokens = torch.tensor([[5, 2, 7, 7], [5, 6, 8, 9], [2, 2, 3, 3], [4, 9, 3, 1]])
    mask = core.completion_mask(tokens, [2, 9])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]


def test_logprobs_and_entropy():
    logits = torch.log(t([[[0.5, 0.25, 0.25]]]))
    assert core.logprobs_of(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.25))
    assert core.entropy_of(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
