"""The planner's measured constants (calibration.yaml): the CPU process's fixed memory, the
efficiency (MFU) of a training step per device, CUDA context and fragmentation margins."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

FILE = Path(__file__).with_name("calibration.yaml")


@dataclass(frozen=True)
class Calibration:
    cpu_runtime_bytes: float
    cpu_bytes_per_dataset_token: float
    cpu_efficiency: float
    cpu_fp32_gflops: float
    cpu_allocator_retention: float
    cuda_runtime_bytes: float
    cuda_context_bytes: float
    cuda_fragmentation: float
    cuda_efficiency: dict
    cpu_bf16_gflops: float | None = None  # CPUs with native bf16 (AMX / AVX512-BF16)
    cpu_bf16_efficiency: float | None = None
    cpu_tokenizer_bytes_per_vocab: float = 0.0  # the tokenizer's RSS per vocabulary entry (heap trimmed)
    cpu_tokenizer_load_bytes_per_vocab: float = 0.0  # ... as just built (before any trim)
    cpu_load_runtime_bytes: float = 0.0  # the process before the model loads, besides tokenizer and data
    cpu_source: str = ""
    cuda_source: str = ""

    def efficiency(self, device: str, kind: str, precision: str = "fp32") -> float:
        """MFU for a device and a method kind (full | adapter | quantised)."""
        if device == "cpu":
            return self.cpu_bf16_efficiency if precision == "bf16" and self.cpu_bf16_efficiency else self.cpu_efficiency
        return float(self.cuda_efficiency.get(kind, self.cuda_efficiency.get("adapter", 0.3)))


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    data = yaml.safe_load(FILE.read_text(encoding="utf-8"))
    cpu, cuda = data["cpu"], data["cuda"]
    return Calibration(
        cpu_runtime_bytes=float(cpu["runtime_bytes"]), cpu_bytes_per_dataset_token=float(cpu["bytes_per_dataset_token"]),
        cpu_efficiency=float(cpu["efficiency"]), cpu_fp32_gflops=float(cpu["fp32_gflops"]),
        cpu_allocator_retention=float(cpu.get("allocator_retention", 0.0)),
        cpu_tokenizer_bytes_per_vocab=float(cpu.get("tokenizer_bytes_per_vocab", 0.0)),
        cpu_tokenizer_load_bytes_per_vocab=float(cpu.get("tokenizer_load_bytes_per_vocab", 0.0)),
        cpu_load_runtime_bytes=float(cpu.get("load_runtime_bytes", 0.0)),
        cpu_bf16_gflops=float(cpu["bf16_gflops"]) if cpu.get("bf16_gflops") else None,
        cpu_bf16_efficiency=float(cpu["bf16_efficiency"]) if cpu.get("bf16_efficiency") else None,
        cuda_runtime_bytes=float(cuda["runtime_bytes"]),
        cuda_context_bytes=float(cuda["context_bytes"]), cuda_fragmentation=float(cuda["fragmentation"]),
        cuda_efficiency=dict(cuda["efficiency"]), cpu_source=str(cpu.get("source", "")),
        cuda_source=str(cuda.get("source", "")),
    )
