"""For a GPU budget (a GPU type × at most N of them), the best settings that fit: method
(full / LoRA / QLoRA), micro-batch and gradient accumulation, gradient checkpointing, the
optimizer, CPU offload, and how many GPUs — each with the reason in one line.

Policy (the seeds' decision matrix, made explicit):
  1. quality first: full fine-tuning if it fits comfortably, else LoRA on a 16-bit base, else
     QLoRA (4-bit base) — unless the data is small (under ~1M tokens), where LoRA is preferred
     over full fine-tuning (few samples over all weights overfit and forget); a method that
     fits only a micro-batch of 1 yields to the next one that fits more; LoRA and QLoRA train
     equally well, so between them the faster setting wins (QLoRA dequantises: QLORA_SPEED);
  2. "comfortably" = the device needs at most 80% of its memory: real batches run longer than
     planned, the allocator fragments, and the estimate has its own error;
  3. then speed: the largest micro-batch that fits (up to the effective batch), without
     gradient checkpointing when that still fits a micro-batch of 4 or the whole batch;
  4. more GPUs when the budget has them (DDP when one GPU holds the model, else FSDP);
     CPU offload (ZeRO-3) only when nothing else fits."""

from __future__ import annotations

from dataclasses import dataclass, field

from danlu.plan.estimate import estimate_memory
from danlu.plan.hardware import Device
from danlu.plan.terms import GiB

COMFORT = 0.80
SMALL_DATA_TOKENS = 1_000_000
USEFUL_BATCH = 2  # a method that fits only a micro-batch of 1 yields to one that fits more
BATCHES = (1, 2, 4, 8, 16, 32, 64)
METHODS = {
    "full": {"name": "full"},
    "lora": {"name": "lora", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
    "qlora": {"name": "lora", "r": 16, "lora_alpha": 32, "target_modules": "all-linear", "quantize": "nf4"},
}
QUALITY = ("full", "lora", "qlora")
# QLoRA's tokens/s relative to 16-bit LoRA: torchtune, Llama 3.1 8B on an RTX 4090, packed 2048:
# QLoRA 2,413 vs LoRA 3,083 tokens/s (BENCHMARKS.md anchors)
QLORA_SPEED = 0.78


@dataclass
class Candidate:
    method: str
    batch_size: int
    gradient_checkpointing: bool
    gpus: int
    strategy: str
    optimizer: str
    offload: str
    need_bytes: int
    peak_bytes: int

    @property
    def speed(self) -> float:
        """Relative throughput: GPUs × utilisation of a micro-batch × (3/4 with recomputation)
        × (QLORA_SPEED for a 4-bit base, which dequantises every weight at every matmul)."""
        return (self.gpus * min(1.0, self.batch_size / 4) ** 0.5 * (0.75 if self.gradient_checkpointing else 1.0)
                * (QLORA_SPEED if self.method == "qlora" else 1.0))


@dataclass
class Recommendation:
    device: Device
    gpus_budget: int
    chosen: Candidate | None
    grad_accum: int = 1
    reasons: list[tuple[str, str, str]] = field(default_factory=list)  # (setting, value, why)
    by_method: dict[str, Candidate | None] = field(default_factory=dict)
    spec: object = None  # the chosen RunSpec

    def to_dict(self) -> dict:
        return {"device": self.device.label or self.device.name, "gpus_budget": self.gpus_budget,
                "settings": [{"setting": s, "value": v, "reason": r} for s, v, r in self.reasons],
                "best_by_method": {m: (None if c is None else {"batch_size": c.batch_size,
                                                                "gradient_checkpointing": c.gradient_checkpointing,
                                                                "gpus": c.gpus, "strategy": c.strategy,
                                                                "need_gib": round(c.need_bytes / GiB, 2)})
                                   for m, c in self.by_method.items()}}


def _variant(spec, method: str):
    opts = dict(METHODS[method])
    user = spec.method if isinstance(spec.method, dict) else (spec.method.model_dump() if spec.method is not None else {})
    if method != "full" and spec.method_name == "lora":  # keep the user's LoRA settings (rank, targets)
        for key in ("r", "target_modules", "lora_dropout", "dropout"):
            if user.get(key) is not None:
                opts[key] = user[key]
    return opts


def _try(spec, method: str, batch: int, ckpt: bool, gpus: int, strategy: str, optimizer: str, offload: str):
    s = spec.with_(method_name="full" if method == "full" else "lora", method=_variant(spec, method),
                   batch_size=batch, gradient_checkpointing=ckpt, gpus=gpus, strategy=strategy,
                   optimizer=optimizer, offload=offload, grad_accum=2)  # accumulation > 1: gradients persist
    est = estimate_memory(s)
    return Candidate(method, batch, ckpt, gpus, strategy, optimizer, offload, est.device_need_bytes, est.peak_bytes), s


def _layouts(method: str, budget: int, offload: bool):
    """(gpus, strategy, optimizer, offload) to try, simplest first; CPU offload only when asked."""
    counts = sorted({n for n in (1, 2, 4, 8, 16, budget) if n <= budget})
    if offload:
        return [(n, "zero3", "adamw", off) for n in counts for off in ("optimizer", "all")]
    out = [(n, "ddp", "adamw", "none") for n in counts]
    out += [(n, "fsdp", "adamw", "none") for n in counts if n > 1]
    out += [(n, "ddp", "paged_adamw_8bit", "none") for n in counts]
    return out + [(n, "fsdp", "paged_adamw_8bit", "none") for n in counts if n > 1]


def best_for_method(spec, device: Device, method: str, budget: int, limit: float, offload: bool = False):
    """The fastest fitting candidate of one method under `limit` (a fraction of memory)."""
    cap = device.memory_bytes * limit
    target = max(spec.batch_size * spec.grad_accum, 1)
    for layout in _layouts(method, budget, offload):
        fitting = []
        for ckpt in (False, True):
            for b in (b for b in BATCHES if b <= max(target, 1)):
                cand, s = _try(spec, method, b, ckpt, *layout)
                if cand.need_bytes > cap:
                    break
                fitting.append((cand, s))
        if fitting:
            top = max(fitting, key=lambda cs: (cs[0].speed, -cs[0].need_bytes))
            if layout[0] < budget:  # it fits fewer GPUs: the whole budget runs faster
                cand, s = _try(spec, method, top[0].batch_size, top[0].gradient_checkpointing, budget, layout[1],
                               layout[2], layout[3])
                if cand.need_bytes <= cap:
                    return cand, s
            return top
    return None, None


def recommend(spec, device: Device, gpus: int = 1, dataset_tokens: int | None = None) -> Recommendation:
    rec = Recommendation(device, gpus, None)
    order = list(QUALITY)
    small_data = dataset_tokens is not None and dataset_tokens < SMALL_DATA_TOKENS
    if small_data:
        order = ["lora", "full", "qlora"]
    tight = False
    for limit, offload in ((COMFORT, False), (0.97, False), (COMFORT, True), (0.97, True)):
        results = {m: best_for_method(spec, device, m, gpus, limit, offload) for m in QUALITY}
        if not rec.by_method:
            rec.by_method = {m: results[m][0] for m in QUALITY}
        pick = _pick(order, results, spec)
        if pick is not None:
            tight = limit > COMFORT
            break
    if pick is None:
        rec.reasons.append(("method", "none", f"nothing fits {gpus} × {device.label or device.name}, even with "
                            "QLoRA, micro-batch 1, checkpointing and CPU offload: shorten train.max_length or "
                            "pick a smaller model or a larger GPU"))
        return rec
    cand, s = results[pick]
    rec.chosen, rec.spec = cand, s
    rec.grad_accum = max(1, -(-spec.batch_size * spec.grad_accum // (cand.batch_size * cand.gpus)))
    rec.reasons = _reasons(spec, device, cand, rec, pick, small_data, tight)
    return rec


def _pick(order: list[str], results: dict, spec) -> str | None:
    """The first method (in quality order) that fits at a useful micro-batch; one that fits only
    at micro-batch 1 loses to a later one that fits a larger batch (QLoRA trains about as well
    as 16-bit LoRA, and a micro-batch of 1 leaves the GPU idle)."""
    fitting = [m for m in order if results[m][0] is not None]
    want = min(USEFUL_BATCH, max(spec.batch_size * spec.grad_accum, 1))
    roomy = [m for m in fitting if results[m][0].batch_size >= want]
    pick = (roomy or fitting or [None])[0]
    # LoRA and QLoRA train equally well (the QLoRA paper): between them the faster setting wins
    if pick == "lora" and "qlora" in roomy and results["qlora"][0].speed > results["lora"][0].speed:
        return "qlora"
    return pick


def _gib(n) -> str:
    return f"{n / GiB:.1f} GiB"


def _reasons(spec, device, c: Candidate, rec: Recommendation, pick: str, small_data: bool, tight: bool):
    mem = device.memory_bytes
    name = {"full": "full fine-tuning", "lora": "LoRA (16-bit base)", "qlora": "QLoRA (4-bit base)"}
    better = [m for m in QUALITY[:QUALITY.index(pick)]]
    if small_data and pick == "lora":
        why = "small data (under ~1M tokens): adapting a low-rank update generalises better than moving all weights"
    elif better:
        worst = better[-1]
        got = rec.by_method.get(worst)
        if pick == "qlora" and rec.by_method.get("lora") is not None and rec.by_method["lora"].speed < c.speed:
            lo = rec.by_method["lora"]
            why = (f"{name['lora']} fits only micro-batch {lo.batch_size}"
                   + (" with gradient checkpointing" if lo.gradient_checkpointing else "")
                   + f" ({_gib(lo.need_bytes)} of {_gib(mem)}); {name[pick]} runs micro-batch {c.batch_size}"
                   + ("" if c.gradient_checkpointing else " without recomputation")
                   + f" in {_gib(c.need_bytes)}: faster, and it trains as well")
        elif got is not None and got.batch_size < c.batch_size:
            why = (f"{name[worst]} fits only micro-batch {got.batch_size} ({_gib(got.need_bytes)} of {_gib(mem)}); "
                   f"{name[pick]} runs micro-batch {c.batch_size} in {_gib(c.need_bytes)}")
        else:
            why = (f"{name[worst]} needs more than {COMFORT:.0%} of {_gib(mem)} at any setting"
                   + (f" (best {_gib(got.need_bytes)})" if got else "") + f"; {name[pick]} needs {_gib(c.need_bytes)}")
    else:
        why = f"fits with room to spare ({_gib(c.need_bytes)} of {_gib(mem)}), and trains every weight"
    if tight:
        why += f" — only {1 - c.need_bytes / mem:.0%} spare: expect out-of-memory on longer batches"
    eff = spec.batch_size * spec.grad_accum
    out = [("method", pick, why),
           ("batch_size", str(c.batch_size), f"largest micro-batch that fits ({c.batch_size} × {spec.max_length} tokens)"),
           ("grad_accum", str(rec.grad_accum), f"keeps {eff} samples per optimizer step"
            + (f" across {c.gpus} GPUs" if c.gpus > 1 else "")),
           ("gradient_checkpointing", "on" if c.gradient_checkpointing else "off",
            "without it this micro-batch does not fit; recomputing costs ~1/3 more compute"
            if c.gradient_checkpointing else "activations fit without recomputation (faster)"),
           ("optimizer", c.optimizer, "8-bit paged states free memory for the batch" if "8bit" in c.optimizer
            else "standard AdamW states fit")]
    if c.offload != "none":
        out.append(("offload", c.offload, "only CPU offload (DeepSpeed ZeRO-3) fits; expect it to be slower"))
    if c.gpus > 1:
        how = {"ddp": "the model fits one GPU: DDP runs a micro-batch on each",
               "fsdp": "weights, gradients and optimizer states sharded across GPUs (FSDP)",
               "zero3": "DeepSpeed ZeRO-3 shards everything across GPUs"}[c.strategy]
        out.append(("gpus", f"{c.gpus} ({c.strategy})", how))
    else:
        out.append(("gpus", "1", "one GPU is the whole budget" if rec.gpus_budget == 1 else "fits one GPU"))
    return out
