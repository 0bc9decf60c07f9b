"""Devices the planner knows: memory as the driver reports it (`total_memory`), dense peak
TFLOPS per precision from the vendors' spec sheets, and on-demand prices (prices.yaml, editable).
The device that runs a command is detected: a CUDA GPU by name, or this CPU (process RSS)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from danlu.errors import UserError

PRICES = Path(__file__).with_name("prices.yaml")
MiB = 2**20


@dataclass(frozen=True)
class Device:
    name: str  # table key (rtx4090, a100-80gb ...) or "cpu" / "custom"
    kind: str  # cuda | cpu
    memory_bytes: int
    bf16_tflops: float  # dense tensor-core peak with fp32 accumulation (what a bf16 matmul can reach)
    fp32_tflops: float  # without TF32 (PyTorch's default for fp32 matmuls)
    label: str = ""

    def peak_flops(self, precision: str) -> float:
        return 1e12 * (self.fp32_tflops if precision == "fp32" else self.bf16_tflops)


# name: (label, MiB as reported by the driver, bf16 dense TFLOPS, fp32 TFLOPS, aliases)
GPUS: dict[str, tuple] = {
    "t4": ("NVIDIA T4 16GB (no bf16: fp16)", 15360, 65.0, 8.1, ("tesla-t4",)),
    "v100": ("NVIDIA V100 32GB (no bf16: fp16)", 32510, 125.0, 15.7, ("v100-32gb", "tesla-v100")),
    "rtx3090": ("NVIDIA GeForce RTX 3090 24GB", 24576, 71.0, 35.6, ("3090",)),
    "rtx4090": ("NVIDIA GeForce RTX 4090 24GB", 24564, 165.2, 82.6, ("4090",)),
    "a10": ("NVIDIA A10 24GB", 23028, 125.0, 31.2, ()),
    "a10g": ("NVIDIA A10G 24GB (AWS)", 23028, 70.0, 31.2, ()),
    "l4": ("NVIDIA L4 24GB", 23034, 121.0, 30.3, ()),
    "a6000": ("NVIDIA RTX A6000 48GB", 49140, 154.8, 38.7, ("rtx-a6000",)),
    "l40s": ("NVIDIA L40S 48GB", 46068, 362.0, 91.6, ()),
    "a100-40gb": ("NVIDIA A100 40GB", 40960, 312.0, 19.5, ("a100-40", "a100-sxm4-40gb", "a100-pcie-40gb")),
    "a100-80gb": ("NVIDIA A100 80GB", 81920, 312.0, 19.5, ("a100", "a100-80", "a100-sxm4-80gb", "a100-pcie-80gb")),
    "h100": ("NVIDIA H100 80GB SXM", 81559, 989.4, 66.9, ("h100-sxm", "h100-80gb", "h100-80gb-hbm3")),
    "h100-pcie": ("NVIDIA H100 80GB PCIe", 81559, 756.0, 51.2, ()),
    "h200": ("NVIDIA H200 141GB", 143771, 989.4, 66.9, ("h200-141gb",)),
}


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower()).removeprefix("nvidia-").removeprefix("geforce-")


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    out = {}
    for key, (label, *_rest, aliases) in GPUS.items():
        for name in (key, *aliases):
            out[_key(name)] = key
    return out


def gpu(name: str) -> Device:
    """A GPU from the table by name (rtx4090, 4090, A100-80GB, h100 ...)."""
    key = _index().get(_key(name))
    if key is None:
        key = _match_driver_name(name)
    if key is None:
        raise UserError(f"unknown GPU {name!r}", where="--gpu",
                        hint="known: " + ", ".join(GPUS) + "; or give its memory with --vram GB")
    label, mib, bf16, fp32, _ = GPUS[key]
    return Device(key, "cuda", mib * MiB, bf16, fp32, label)


def _match_driver_name(name: str) -> str | None:
    """'NVIDIA A100-SXM4-80GB' / 'NVIDIA GeForce RTX 4090' (torch.cuda.get_device_name) → table key."""
    n = name.lower()
    for key, needle in (("h200", "h200"), ("h100-pcie", "h100 pcie"), ("h100", "h100"), ("a100-40gb", "a100-sxm4-40"),
                        ("a100-40gb", "a100-pcie-40"), ("a100-80gb", "a100"), ("l40s", "l40s"), ("l4", " l4"),
                        ("a10g", "a10g"), ("a10", " a10"), ("rtx4090", "4090"), ("rtx3090", "3090"),
                        ("a6000", "a6000"), ("v100", "v100"), ("t4", " t4")):
        if needle in n:
            return key
    return None


def custom_gpu(vram_gb: float, like: str = "a100-80gb") -> Device:
    """A GPU known only by its memory (--vram); FLOPS of an A100 unless `like` says otherwise."""
    base = gpu(like)
    return Device("custom", "cuda", int(vram_gb * 1024**3), base.bf16_tflops, base.fp32_tflops,
                  f"a {vram_gb:g} GB GPU (FLOPS assumed those of {base.label})")


def this_machine() -> Device:
    """The device a `danlu train` here would use: the first CUDA GPU, else this CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            key = _match_driver_name(props.name)
            base = gpu(key) if key else None
            return Device(key or "custom", "cuda", int(props.total_memory),
                          base.bf16_tflops if base else 100.0, base.fp32_tflops if base else 20.0, props.name)
    except ImportError:
        pass
    return cpu_device()


def cpu_device() -> Device:
    """This CPU: memory = RAM available to a new process (physical RAM minus what others use);
    FLOPS from danlu's own matmul readings (calibration.yaml): fp32, and bf16 where the CPU has
    native bf16 (else a bf16 matmul runs no faster than fp32 — far slower, in fact)."""
    import psutil

    from danlu.models.load import cpu_has_native_bf16
    from danlu.plan.calibration import calibration

    vm = psutil.virtual_memory()
    cal = calibration()
    fp32 = cal.cpu_fp32_gflops
    bf16 = cal.cpu_bf16_gflops if cal.cpu_bf16_gflops and cpu_has_native_bf16() else fp32
    return Device("cpu", "cpu", int(vm.available), bf16 / 1000, fp32 / 1000,
                  f"this CPU ({psutil.cpu_count(logical=True)} threads, {vm.total / 1024**3:.0f} GiB RAM)")


@dataclass(frozen=True)
class Price:
    gpu: str
    provider: str
    usd_per_hour: float
    as_of: str
    source: str


def load_prices(path: str | Path | None = None) -> list[Price]:
    p = Path(path) if path else PRICES
    try:
        rows = yaml.safe_load(p.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the price table {p}: {exc}", where="--prices") from None
    out = []
    for i, row in enumerate(rows, 1):
        try:
            key = _index().get(_key(str(row["gpu"])), _key(str(row["gpu"])))
            out.append(Price(key, str(row["provider"]), float(row["usd_per_hour"]), str(row.get("as_of", "")),
                             str(row.get("source", ""))))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"price row {i} needs gpu, provider and usd_per_hour", where=f"{p} row {i}",
                            hint="e.g. - {gpu: h100, provider: mycloud, usd_per_hour: 2.5, as_of: 2026-05}") from None
    return out


def prices_for(device: Device, prices: list[Price]) -> list[Price]:
    return sorted((p for p in prices if p.gpu == device.name), key=lambda p: p.usd_per_hour)
