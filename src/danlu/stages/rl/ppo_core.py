"""The terms of PPO for language models (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al.
2022), as plain functions of tensors so each is tested against hand-computed values.

Shapes: B answers, T answer tokens. `mask` (B, T) is 1 on the answer's tokens (its stop token
included) and 0 on the padding after it; every per-token tensor is 0 where the mask is 0.

  per-token reward   r_t = -kl_coef · KL_t  (+ the reward model's score on the last token)
  GAE                δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γλ·A_{t+1},   R_t = A_t + V_t
  policy (clipped)   L = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε)),  ρ_t = π(a_t|s_t) / π_old(a_t|s_t)
  value (clipped)    L = ½·mean_t max((V_t − R_t)², (V_old + clip(V_t − V_old, −ε_v, ε_v) − R_t)²)
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1) if n > 1 else var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked entries; 0 outside the mask."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log π(token) for each position: logits (B, T, V), tokens (B, T) → (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's distribution: (B, T, V) → (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Estimate of KL(π ‖ π_ref) at each sampled token (Schulman, "Approximating KL divergence"):
    k1 = log π − log π_ref (unbiased, can be negative); k3 = (π_ref/π − 1) − log(π_ref/π) (≥ 0)."""
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (k1 or k3)")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """−kl_coef·KL on every answer token, plus each answer's score (B,) on its last token."""
    maskf = mask.to(kl.dtype)
    rewards = -kl_coef * kl * maskf
    last = (maskf.sum(1).long() - 1).clamp(min=0)  # (B,) index of each answer's last token
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards * maskf


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) → (advantages, returns), each (B, T).
    The value after an answer's last token is 0 (the episode ends there)."""
    maskf = mask.to(values.dtype)
    values = values * maskf
    rewards = rewards * maskf
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * maskf[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * maskf


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float = 0.2) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate objective (to minimise) and its statistics."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(logp.dtype), mask),
            "approx_kl": 0.5 * masked_mean((logp - old_logp) ** 2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, dict]:
    """The clipped value loss (to minimise) and the fraction of tokens where clipping bound."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped_err > unclipped_err).to(values.dtype), mask)}
    return loss, stats


def completion_mask(tokens: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 on each answer's tokens up to and including its first stop token, 0 after: (B, T) → (B, T)."""
    is_stop = torch.zeros_like(tokens, dtype=torch.bool)
    for sid in stop_ids:
        is_stop |= tokens == sid
    before_stop = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()  # stops strictly before t
    return (before_stop == 0).long()
