"""A plan: memory (estimate.py), time and cost (throughput.py) and, for a GPU budget, the
recommended settings (recommend.py) for one run, as one object and as one JSON document whose
top-level `peak_bytes` is the predicted peak memory of the device that runs it."""

from __future__ import annotations

from dataclasses import dataclass

from danlu.plan.estimate import MemoryEstimate, estimate_memory
from danlu.plan.hardware import Device, Price
from danlu.plan.recommend import Recommendation, recommend
from danlu.plan.throughput import TimeEstimate, estimate_time
from danlu.plan.tokens import DataTokens


@dataclass
class Plan:
    spec: object
    device: Device
    memory: MemoryEstimate
    time: TimeEstimate
    data: DataTokens | None = None
    recommendation: Recommendation | None = None

    @property
    def fits(self) -> bool:
        return self.memory.device_need_bytes <= self.device.memory_bytes

    def to_dict(self) -> dict:
        s, a = self.spec, self.spec.arch
        out = {
            "peak_bytes": self.memory.peak_bytes,
            "peak_measure": "process RSS" if self.device.kind == "cpu" else "torch.cuda.max_memory_allocated",
            "device": {"name": self.device.name, "kind": self.device.kind, "label": self.device.label,
                       "memory_bytes": self.device.memory_bytes, "gpus": s.gpus},
            "fits": self.fits,
            "model": {"name": a.name, "source": a.source, "model_type": a.model_type, "params": a.n_params,
                      "layers": a.layers, "hidden": a.hidden, "vocab": a.vocab},
            "run": {"method": s.method_name, "stage": s.stage, "trainable_params": s.shape.trainable,
                    "batch_size": s.batch_size, "grad_accum": s.grad_accum, "max_length": s.max_length,
                    "packing": s.packing, "fused_loss": s.fused_loss, "gradient_checkpointing": s.gradient_checkpointing,
                    "offload_activations": s.offload_activations, "liger_kernel": s.liger,
                    "optimizer": s.optimizer, "precision": s.precision, "attn_implementation": s.attn,
                    "strategy": s.strategy, "offload": s.offload, "epochs": s.epochs, "max_steps": s.max_steps},
            "memory": self.memory.to_dict(),
            "time": self.time.to_dict(),
        }
        if self.data is not None:
            out["data"] = self.data.to_dict()
        if self.recommendation is not None:
            out["recommendation"] = self.recommendation.to_dict()
        return out


def make_plan(spec, device: Device, prices: list[Price], *, data: DataTokens | None = None,
              advise: bool = False) -> Plan:
    if data is not None:
        spec.dataset_tokens, spec.dataset_samples = data.tokens, data.samples
        spec.extra["lengths"] = data.lengths
    memory = estimate_memory(spec)
    time = estimate_time(spec, device, prices)
    rec = None
    if advise and device.kind == "cuda":
        rec = recommend(spec, device, gpus=spec.gpus, dataset_tokens=data.tokens if data else spec.dataset_tokens)
    return Plan(spec, device, memory, time, data, rec)
