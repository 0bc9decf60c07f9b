"""The layers of the `adapter` method (Houlsby bottleneck adapters)."""

from __future__ import annotations

import torch
import torch.nn as nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    """h (B, T, d) → down (B, T, m) → act → up (B, T, d). Kept in fp32 whatever the base's
    dtype (it trains); the output is cast back to the base's dtype."""

    def __init__(self, d: int, m: int, activation: str):
        super().__init__()
        self.down = nn.Linear(d, m)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(m, d)
        nn.init.zeros_(self.up.weight)  # identity at the start: h + 0
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h.to(self.down.weight.dtype)))).to(h.dtype)


class AdapterLayer(nn.Module):
    """A sub-layer's output projection followed by its bottleneck adapter (with residual)."""

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base_layer, self.adapter = base_layer, adapter

    def forward(self, *args, **kwargs):
        h = self.base_layer(*args, **kwargs)
        return h + self.adapter(h)


def out_features(layer: nn.Module) -> int:
    """nn.Linear's out_features; GPT-2's Conv1D calls it nf."""
    return getattr(layer, "out_features", None) or layer.nf
