"""Time and cost: training FLOPs per token for the method and stage, the device's peak × an
efficiency factor (MFU, calibrated from danlu's own bench readings where it has them) →
tokens per second → hours for the dataset's tokens × epochs → dollars per run at each
provider of prices.yaml.

FLOPs per processed token (the usual accounting: a matmul with N weights costs 2N forward):
  full fine-tuning      6 N  (forward; input gradients; weight gradients)
  frozen base + adapter 4 N + 6 N_trainable (no weight gradients for the base)
  freeze top k blocks   2 N forward + 4 N of the trained blocks + 2 N of the blocks between
                        them and the loss
  attention             2·2·q_dim·context per block forward (context = L/2 causal), ×3 with backward
  gradient checkpointing one more forward of the blocks
  stages                DPO: two sequences per sample + the reference forward; distillation: the
                        teacher's forward; PPO/GRPO: generation is memory-bound (not modelled)"""

from __future__ import annotations

from dataclasses import dataclass

from danlu.plan.calibration import calibration
from danlu.plan.hardware import Device, Price, prices_for
from danlu.plan.stages import stage_shape


@dataclass
class Flops:
    per_token: float  # training FLOPs per processed token, all models of the stage
    forward: float
    detail: str


def method_kind(spec) -> str:
    """full | adapter | quantised — the efficiency classes of calibration.yaml."""
    if spec.shape.trains_base:
        return "full"
    return "quantised" if spec.shape.quant_bits else "adapter"


def _matmul_params(arch, label_fraction: float) -> tuple[float, float]:
    """(block matmul weights, output-layer weights per token at label positions)."""
    blocks = float(arch.linear_params)
    head = 0.0 if arch.is_encoder else arch.vocab * arch.hidden * label_fraction
    return blocks, head


def attention_flops(arch, seq: int, causal: bool = True) -> float:
    """Forward attention FLOPs per token over all blocks (scores and weighted sum)."""
    context = seq / 2 if causal else seq
    return 2 * 2 * arch.layers * arch.q_dim * context


def training_flops(spec, label_fraction: float = 1.0) -> Flops:
    arch, shape, st = spec.arch, spec.shape, stage_shape(spec)
    seq = spec.max_length + shape.virtual_tokens
    blocks, head = _matmul_params(arch, label_fraction if st.lm_logits else 0.0)
    attn = attention_flops(arch, seq, causal=not arch.is_encoder)
    fwd = 2 * (blocks + head) + attn
    if shape.trains_base and shape.trainable_blocks == arch.layers:
        total, how = 3 * fwd, "6N (full)"
    elif shape.trains_base:  # freeze: backward through the trained top blocks only
        frac = shape.trainable_blocks / arch.layers
        total = fwd + 4 * blocks * frac + 2 * head + 2 * attn * frac
        how = f"2N + 4N×{frac:.2f} (top {shape.trainable_blocks} blocks train)"
    else:
        total = 2 * fwd + 6 * shape.trainable
        how = "4N + 6N_trainable (frozen base)"
    if spec.gradient_checkpointing:
        total += 2 * blocks + attn
        how += " + a recomputed forward"
    total *= st.rows
    for m in st.extra:  # reference / teacher / reward forwards
        if m.forward_rows:
            a = m.arch or arch
            total += m.forward_rows * (2 * (a.linear_params + (a.vocab * a.hidden if st.lm_logits else 0))
                                       + attention_flops(a, seq))
        if m.trainable:  # PPO's value model trains too
            total += 6 * m.params
    if arch.vision is not None:  # one image per sample: the tower's FLOPs spread over the sample's tokens
        from danlu.plan.vision import tower_trains, vision_flops

        total += st.rows * vision_flops(arch.vision, tower_trains(spec.method)) / max(seq, 1)
        how += " + the vision tower (one image per sample)"
    return Flops(total, fwd, how)


@dataclass
class TimeEstimate:
    tokens_per_epoch: int | None
    tokens_total: int | None
    flops_per_token: float
    tokens_per_s: float
    hours: float | None
    efficiency: float
    peak_flops: float
    flops_detail: str
    costs: list[dict]
    notes: list[str]

    def to_dict(self) -> dict:
        return {"tokens_per_epoch": self.tokens_per_epoch, "tokens_total": self.tokens_total,
                "flops_per_token": self.flops_per_token, "tokens_per_s": round(self.tokens_per_s, 1),
                "hours": round(self.hours, 4) if self.hours is not None else None,
                "efficiency": self.efficiency, "device_peak_flops": self.peak_flops,
                "flops_detail": self.flops_detail, "costs": self.costs, "notes": self.notes}


def processed_tokens(spec) -> tuple[int | None, list[str]]:
    """Tokens the model processes in one epoch: the dataset's tokens when packed; with padding,
    each micro-batch is as long as its longest sample."""
    notes: list[str] = []
    lengths = spec.extra.get("lengths")
    if spec.dataset_tokens is None:
        return None, ["no data given: pass the config's data or --tokens N for time and cost"]
    if spec.packing or not lengths:
        return int(spec.dataset_tokens), notes
    import random

    order = list(lengths)
    random.Random(0).shuffle(order)
    b = spec.batch_size
    padded = sum(max(order[i:i + b]) * len(order[i:i + b]) for i in range(0, len(order), b))
    notes.append(f"padding: {padded / max(spec.dataset_tokens, 1):.2f}× the real tokens (packing off)")
    return padded, notes


def estimate_time(spec, device: Device, prices: list[Price]) -> TimeEstimate:
    flops = training_flops(spec)
    kind = method_kind(spec)
    eff = calibration().efficiency(device.kind, kind, spec.precision)
    peak = device.peak_flops(spec.precision) * max(spec.gpus, 1)
    tps = peak * eff / flops.per_token
    per_epoch, notes = processed_tokens(spec)
    total = None
    if spec.max_steps and spec.max_steps > 0:
        mean = (spec.dataset_tokens / spec.dataset_samples) if spec.dataset_tokens and spec.dataset_samples \
            else spec.max_length
        total = int(spec.max_steps * spec.batch_size * spec.grad_accum * max(spec.gpus, 1) * mean)
    elif per_epoch is not None:
        total = int(per_epoch * spec.epochs)
    hours = total / tps / 3600 if total is not None else None
    costs = []
    if hours is not None and device.kind == "cuda":
        for p in prices_for(device, prices):
            costs.append({"provider": p.provider, "gpu": p.gpu, "usd_per_gpu_hour": p.usd_per_hour,
                          "gpus": spec.gpus, "usd": round(hours * p.usd_per_hour * max(spec.gpus, 1), 2),
                          "as_of": p.as_of, "source": p.source})
    if device.kind == "cuda" and "no GPU" in calibration().cuda_source:
        notes.append("GPU efficiency not yet calibrated by danlu's own readings (prior from published anchors)")
    return TimeEstimate(per_epoch, total, flops.per_token, tps, hours, eff, peak, flops.detail, costs, notes)
