"""The output layer's input, captured: while a capture is active the model computes no logits
(the layer is fed an empty sequence) and the hidden states it would have projected are kept. Training's
chunked loss (train.fused_ce) and evaluation's held-out loss (eval.likelihood) project only the
positions they need from them."""

from __future__ import annotations

import torch
import torch.nn as nn

from danlu.runplan import SIMPLE_HEADS


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        inner = getattr(model, "module", None)  # DDP
        if inner is None:
            return model
        model = inner


def fused_head_supported(model: nn.Module) -> bool:
    """The output layer is a plain bias-free linear of a family whose logits are nothing more
    (no soft-capping): its input can be projected outside the model."""
    base = _unwrap(model)
    cfg = getattr(base, "config", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    return (cfg is not None and getattr(cfg, "model_type", None) in SIMPLE_HEADS
            and isinstance(head, nn.Linear) and head.bias is None
            and not getattr(cfg, "final_logit_softcapping", None))


class HeadInputCapture:
    """While active, the output layer's input is kept and the layer sees an empty sequence."""

    def __init__(self, model: nn.Module):
        self.head = _unwrap(model).get_output_embeddings()
        self.hidden: torch.Tensor | None = None
        self.active = False
        self._handle = self.head.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if not self.active:
            return None
        (hidden,) = args
        self.hidden = hidden
        return (hidden[..., :0, :],)  # (B, 0, d): no logits are computed

    def take(self) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        return hidden

    def remove(self) -> None:
        self._handle.remove()
