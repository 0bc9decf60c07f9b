"""How N GPUs divide the persistent terms (weights, gradients, optimizer states).

  ddp    every GPU holds everything, plus DDP's gradient buckets (a second copy of the
         gradients: accelerate does not use gradient_as_bucket_view)
  fsdp   FULL_SHARD: weights, gradients and optimizer states / N, plus the weights of the
         block being computed and the next (prefetched), gathered in the compute dtype
  zero1  DeepSpeed (bf16 weights and gradients, fp32 master + states): optimizer / N
  zero2  optimizer and gradients / N (+ reduce buckets)
  zero3  weights too / N (+ the gathered live parameters)
  offload: optimizer → ZeRO-Offload keeps optimizer states in CPU memory; all → parameters too
Activations are never divided (each GPU runs its own micro-batch)."""

from __future__ import annotations

from danlu.plan.terms import Term, gb


def shard(spec, terms: list[Term]) -> tuple[list[Term], float]:
    """(terms for one GPU, bytes moved to host memory)."""
    n, strat = max(spec.gpus, 1), spec.strategy
    divide = {
        "ddp": set(), "fsdp": {"weights", "trainable", "gradients", "optimizer"},
        "zero1": {"optimizer"}, "zero2": {"optimizer", "gradients"},
        "zero3": {"weights", "trainable", "gradients", "optimizer"},
    }[strat]
    offloaded = {"none": set(), "optimizer": {"optimizer"}, "all": {"optimizer", "weights", "trainable"}}[spec.offload]
    out, host = [], 0.0
    for t in terms:
        b = t.bytes / n if t.key in divide and n > 1 else t.bytes
        detail = t.detail + (f" / {n} GPUs ({strat})" if t.key in divide and n > 1 else "")
        if t.key in offloaded:
            host += b
            out.append(Term(t.key, 0.0, detail + f" → CPU memory ({gb(b)})"))
        else:
            out.append(Term(t.key, b, detail))
    out += _overheads(spec, terms, n)
    return out, host


def _overheads(spec, terms: list[Term], n: int) -> list[Term]:
    arch, strat = spec.arch, spec.strategy
    grads = sum(t.bytes for t in terms if t.key == "gradients")
    block = arch.block_params()
    gathered_b = 2.0 if spec.precision in ("bf16", "fp16") else 4.0
    if strat == "ddp" and n > 1:
        return [Term("parallel", grads, f"DDP gradient buckets: a second copy of the gradients ({gb(grads)})")]
    if strat == "fsdp" and n > 1:
        unit = max(2 * block, arch.lm_head_matrix)
        return [Term("parallel", unit * gathered_b,
                     f"FSDP: gathered weights of the current and next block ({unit:,} params × {gathered_b:g} B)")]
    if strat == "zero2" and n > 1:
        bucket = 2 * arch.hidden * arch.hidden * 2.0
        return [Term("parallel", bucket, "ZeRO-2 reduce buckets (hidden² elements, bf16, ×2)")]
    if strat == "zero3":
        live = max(2 * block, arch.lm_head_matrix) * 2.0
        return [Term("parallel", live, "ZeRO-3: gathered live parameters (two blocks or the output layer, bf16)")]
    return []
