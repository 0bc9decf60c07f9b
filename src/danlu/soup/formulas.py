"""Model merging on tensors, as published. For one parameter tensor of each of n fine-tuned models
θ_1..θ_n of one base θ_0, with task vectors τ_i = θ_i − θ_0 and weights w_i:

  linear (model soup, Wortsman et al. 2022)    θ = Σ w_i θ_i / Σ w_i
  task_arithmetic (Ilharco et al. 2023)        θ = θ_0 + λ Σ w_i τ_i
  ties (Yadav et al. 2023)                     1. trim: τ̂_i keeps the top-k entries of |τ_i|, k = ⌊density·N⌋ (≥ 1)
                                               2. elect: γ = sgn(Σ w_i τ̂_i), per entry (+1 where the sum is 0)
                                               3. disjoint mean: τ_m = Σ_{i∈A} w_i τ̂_i / Σ_{i∈A} w_i,
                                                  A = {i : sgn(τ̂_i) = γ} (entries where A is empty stay 0)
                                               θ = θ_0 + λ τ_m
  dare_linear (Yu et al. 2024)                 δ_i = m_i ⊙ τ_i / density, m_i ~ Bernoulli(density) (drop rate
                                               p = 1 − density, survivors rescaled by 1/(1 − p));
                                               θ = θ_0 + λ Σ w_i δ_i
  dare_ties                                    DARE's δ_i in place of TIES's trimmed τ̂_i, then steps 2–3

With every w_i = 1 these are the papers' formulas. All arithmetic is in fp32."""

from __future__ import annotations

import torch

NEEDS_BASE = {"linear": False, "task_arithmetic": True, "ties": True, "dare_linear": True, "dare_ties": True}
USES_DENSITY = {"ties", "dare_linear", "dare_ties"}


def _weights(weights, like: torch.Tensor, n: int) -> torch.Tensor:
    w = torch.tensor(weights if weights is not None else [1.0] * n, dtype=torch.float32)
    return w.view(-1, *([1] * like.dim()))  # (n, 1, ..., 1): broadcasts over a stacked (n, *shape)


def linear(tensors: list[torch.Tensor], weights=None) -> torch.Tensor:
    stacked = torch.stack([t.float() for t in tensors])  # (n, *shape)
    w = _weights(weights, tensors[0], len(tensors))
    return (w * stacked).sum(0) / w.sum()


def task_arithmetic(base: torch.Tensor, tensors: list[torch.Tensor], weights=None, lam: float = 1.0) -> torch.Tensor:
    base = base.float()
    deltas = torch.stack([t.float() - base for t in tensors])
    return base + lam * (_weights(weights, base, len(tensors)) * deltas).sum(0)


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES step 1: keep the ⌊density·N⌋ (at least one) entries of largest magnitude, zero the rest."""
    if density >= 1:
        return delta
    flat = delta.flatten()
    k = max(1, int(density * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k, sorted=False).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).view_as(delta)


def dare(delta: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: drop each entry with probability 1 − density, rescale the survivors by 1/density."""
    if density >= 1:
        return delta
    mask = torch.rand(delta.shape, generator=generator, dtype=torch.float32) < density
    return torch.where(mask, delta / density, torch.zeros_like(delta))


def elect_and_merge(deltas: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """TIES steps 2–3 on stacked sparse task vectors (n, *shape) with weights (n, 1, ...)."""
    weighted = w * deltas
    sign = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)  # γ, per entry
    agree = (torch.sign(deltas) == sign) & (deltas != 0)  # (n, *shape): i ∈ A
    total = (weighted * agree).sum(0)
    count = (w * agree).sum(0)
    return torch.where(count > 0, total / count.clamp(min=1e-12), torch.zeros_like(total))


def ties(base: torch.Tensor, tensors: list[torch.Tensor], weights=None, density: float = 0.5,
         lam: float = 1.0) -> torch.Tensor:
    base = base.float()
    deltas = torch.stack([trim(t.float() - base, density) for t in tensors])
    return base + lam * elect_and_merge(deltas, _weights(weights, base, len(tensors)))


def dare_linear(base: torch.Tensor, tensors: list[torch.Tensor], weights=None, density: float = 0.5,
                lam: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    base = base.float()
    deltas = torch.stack([dare(t.float() - base, density, generator) for t in tensors])
    return base + lam * (_weights(weights, base, len(tensors)) * deltas).sum(0)


def dare_ties(base: torch.Tensor, tensors: list[torch.Tensor], weights=None, density: float = 0.5,
              lam: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    base = base.float()
    deltas = torch.stack([dare(t.float() - base, density, generator) for t in tensors])
    return base + lam * elect_and_merge(deltas, _weights(weights, base, len(tensors)))


MERGERS = {
    "linear": lambda base, ts, w, density, lam, gen: linear(ts, w),
    "task_arithmetic": lambda base, ts, w, density, lam, gen: task_arithmetic(base, ts, w, lam),
    "ties": lambda base, ts, w, density, lam, gen: ties(base, ts, w, density, lam),
    "dare_linear": lambda base, ts, w, density, lam, gen: dare_linear(base, ts, w, density, lam, gen),
    "dare_ties": lambda base, ts, w, density, lam, gen: dare_ties(base, ts, w, density, lam, gen),
}


def merge_tensor(method: str, tensors: list[torch.Tensor], *, base: torch.Tensor | None = None, weights=None,
                 density: float = 0.5, lam: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One merged tensor (fp32) by `method` (a key of MERGERS)."""
    return MERGERS[method](base, tensors, weights, density, lam, generator)
