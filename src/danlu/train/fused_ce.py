"""Chunked linear + cross-entropy: the loss of `hidden @ weight.T` against targets without ever
holding the (tokens × vocabulary) logits — a 32k vocabulary at 8 × 512 tokens is 0.5 GB of fp32
logits, several times a small model's weights. Chunks of `chunk` tokens are projected, their loss
and gradients computed at once (gradient w.r.t. the hidden states, and w.r.t. the weight when it
trains), and the logits dropped; backward only scales the stored gradients.

`OutputCapture` takes the model's own forward path (so DDP/FSDP hooks, PEFT layers and
everything else run as usual) and, through a forward pre-hook on the output layer, keeps that
layer's input and feeds it an empty sequence instead: the model computes no logits at all."""

from __future__ import annotations

import torch
import torch.nn as nn

from danlu.models.head import HeadInputCapture, fused_head_supported  # noqa: F401  (re-exported)
from danlu.runplan import LOGITS_BUDGET, SIMPLE_HEADS, loss_chunk  # noqa: F401  (decided in runplan)


def _same_dtype_matmul(hidden, weight) -> bool:
    """True when `hidden @ weight.T` keeps their common dtype (so it may write into a reused buffer
    with out=): same dtype, and under autocast that dtype is autocast's own."""
    if hidden.dtype != weight.dtype:
        return False
    kind = hidden.device.type
    return not torch.is_autocast_enabled(kind) or torch.get_autocast_dtype(kind) == hidden.dtype


class CEWorkspace:
    """The chunk buffers of the fused loss, kept across steps: a fresh (K, V) fp32 buffer is
    64 MB of pages faulted in on every chunk of every step (as costly as the chunk's matmul on a
    CPU; used on CPU only, CUDA's caching allocator already reuses). Owned by OutputCapture; buffers grow to the largest chunk seen and are views after."""

    def __init__(self):
        self._bufs: dict = {}

    def get(self, name: str, rows: int, cols: int, dtype, device) -> torch.Tensor:
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.device != device or buf.shape[1] != cols or buf.shape[0] < rows:
            buf = self._bufs[name] = torch.empty((rows, cols), dtype=dtype, device=device)
        return buf[:rows]


def _chunk_logits(h, weight, ws):
    """(K, V) fp32 logits of one chunk, in the workspace's buffers when there is one."""
    if ws is None or h.device.type != "cpu" or not _same_dtype_matmul(h, weight):  # CUDA's allocator reuses
        return (h @ weight.t()).float(), None
    low = ws.get("low", h.shape[0], weight.shape[0], h.dtype, h.device)
    torch.mm(h, weight.t(), out=low)
    if low.dtype == torch.float32:
        return low, low
    return ws.get("fp32", h.shape[0], weight.shape[0], torch.float32, h.device).copy_(low), low


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, denom, chunk: int, ws=None):
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            h, t = hidden[s:s + chunk], targets[s:s + chunk]
            logits, low = _chunk_logits(h, weight, ws)  # (K, V) fp32
            picked = logits.gather(1, t[:, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            sums = logits.sub_(top).exp_().sum(dim=-1)  # exp(logits - max) in place: one (K, V) buffer
            total += (top.squeeze(1) + sums.log() - picked).sum()  # logsumexp - target logit
            if need_h or need_w:
                probs = logits.div_(sums[:, None])  # softmax, still the same buffer
                probs[torch.arange(len(t), device=t.device), t] -= 1.0  # d loss / d logits
                probs = low.copy_(probs) if low is not None else probs.to(h.dtype)
                if need_h:
                    grad_h[s:s + chunk] = probs @ weight
                if need_w:
                    grad_w += (probs.t() @ h).float()
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.need, ctx.denom, ctx.w_dtype = (need_h, need_w), denom, weight.dtype
        return total / denom

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        scale = grad_out / ctx.denom
        gh = saved.pop(0) * scale if ctx.need[0] else None
        gw = (saved.pop(0) * scale).to(ctx.w_dtype) if ctx.need[1] else None
        return gh, gw, None, None, None, None


def chunked_linear_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, denom,
                      chunk: int | None = None, workspace: CEWorkspace | None = None) -> torch.Tensor:
    """sum over tokens of CE(hidden @ weight.T, targets) / denom (a number or a 0-d tensor:
    no host sync). hidden (N, d), targets (N,); chunk defaults to loss_chunk(vocabulary);
    workspace: reused chunk buffers (same result, no fresh logits buffer per chunk)."""
    return _ChunkedLinearCE.apply(hidden, weight, targets, denom, chunk or loss_chunk(weight.shape[0]), workspace)


class OutputCapture(HeadInputCapture):
    """HeadInputCapture for the chunked loss, with its reused chunk buffers."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.workspace = CEWorkspace()  # the loss's chunk buffers, reused step after step
