"""Logit distillation (Hinton et al. 2015) on the positions that carry a label:

  loss = alpha · T² · KL(p_teacher^T ‖ p_student^T) + (1 − alpha) · CE(student, label)

where p^T = softmax(logits / T). T² keeps the soft term's gradient on the scale of the hard one
as T grows. Sums over label tokens are divided by the label tokens of the whole accumulated step
(`denom`), like the SFT loss, so gradient accumulation does not change the result."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def kl_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Σ over rows of KL(softmax(t/T) ‖ softmax(s/T)); logits (N, V) → scalar."""
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum()


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                 temperature: float, alpha: float, denom=None) -> tuple[torch.Tensor, dict]:
    """student/teacher logits (B, K, V), targets (B, K) with -100 where no label.
    → (loss, {"ce_sum", "kl_sum", "n"}) with the sums detached, for logging."""
    keep = targets.ne(IGNORE)
    s, t, y = student_logits[keep], teacher_logits[keep], targets[keep]  # (N, V), (N, V), (N,)
    n = keep.sum()
    ce = F.cross_entropy(s.float(), y, reduction="sum")
    kl = kl_sum(s, t.detach(), temperature)
    if denom is None:
        denom = n.clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(ce.device)
    loss = (alpha * temperature ** 2 * kl + (1.0 - alpha) * ce) / denom
    return loss, {"ce_sum": ce.detach(), "kl_sum": kl.detach(), "n": n}
