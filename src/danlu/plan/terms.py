"""A memory term (what it is, its bytes, how they were counted) and how sizes are printed; shared by
estimate.py (which adds the terms up) and parallel.py (which divides them among GPUs)."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3


@dataclass
class Term:
    key: str
    bytes: float
    detail: str

    def to_dict(self) -> dict:
        return {"key": self.key, "bytes": int(self.bytes), "gib": round(self.bytes / GiB, 3), "detail": self.detail}


def gb(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= 0.1 * GiB else f"{n / 2**20:.1f} MiB"
