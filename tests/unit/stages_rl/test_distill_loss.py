"""Logit distillation: the loss against hand-computed values, its limits (alpha 0 = cross-entropy,
alpha 1 = T²·KL), normalisation over the accumulated step, and the vocabulary check."""

from __future__ import annotations

import math

import pytest
import torch

from danlu.errors import UserError
from danlu.stages.kd.loss import distill_loss, kl_sum


def test_kl_by_hand():
    teacher = torch.log(torch.tensor([[0.5, 0.5]]))
    student = torch.log(torch.tensor([[0.25, 0.75]]))
    # KL(p‖q) = .5·log(.5/.25) + .5·log(.5/.75)
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_sum(student, teacher, 1.0).item() == pytest.approx(expected)
    assert kl_sum(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # at T = 2 both distributions are softened: p ∝ sqrt(p)
    ps, pt = torch.tensor([0.25, 0.75]).sqrt(), torch.tensor([0.5, 0.5]).sqrt()
    ps, pt = ps / ps.sum(), pt / pt.sum()
    assert kl_sum(student, teacher, 2.0).item() == pytest.approx((pt * (pt / ps).log()).sum().item(), rel=1e-5)


def _batch():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 4, -100], [0, -100, -100]])  # 3 label tokens
    return student, teacher, targets


def test_alpha_mixes_cross_entropy_and_scaled_kl():
    student, teacher, targets = _batch()
    keep = targets.ne(-100)
    ce = torch.nn.functional.cross_entropy(student[keep], targets[keep], reduction="sum").item()
    kl = kl_sum(student[keep], teacher[keep], 3.0).item()
    for alpha in (0.0, 0.3, 1.0):
        loss, sums = distill_loss(student, teacher, targets, temperature=3.0, alpha=alpha)
        assert loss.item() == pytest.approx((alpha * 9 * kl + (1 - alpha) * ce) / 3, rel=1e-5)
        assert sums["n"].item() == 3 and sums["ce_sum"].item() == pytest.approx(ce, rel=1e-5)
    loss, _ = distill_loss(student, teacher, targets, temperature=3.0, alpha=0.5, denom=torch.tensor(6))
    assert loss.item() == pytest.approx((0.5 * 9 * kl + 0.5 * ce) / 6, rel=1e-5)  # the accumulated step's tokens


def test_gradient_reaches_the_student_only():
    student, teacher, targets = _batch()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss, _ = distill_loss(student, teacher, targets, temperature=2.0, alpha=1.0)
    loss.backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
    assert student.grad[0, 2].abs().sum() == 0  # no label there: no loss


def test_vocabulary_mismatch_is_a_clear_error():
    from danlu.models.load import load_model, load_tokenizer
    from danlu.stages.kd.teacher import check_logit_width, check_same_vocabulary

    student_tok = load_tokenizer("builtin:tiny")
    n = check_same_vocabulary(student_tok, load_tokenizer("builtin:tiny-llama"))
    assert n == len(student_tok)
    check_logit_width(n, load_model("builtin:tiny-llama"))
    with pytest.raises(UserError):
        check_logit_width(n + 1, load_model("builtin:tiny-llama"))
    with pytest.raises(UserError) as info:
        check_same_vocabulary(student_tok, load_tokenizer("builtin:tiny-bert"))
    text = str(info.value)
    assert "distill.teacher" in text and "vocabulary" in text and "distill.mode: sequence" in text
