"""A full disk while saving (checkpoint, artefact, export) becomes one message naming the path, the
bytes needed and the bytes free, with exit 2 — whether the writer raised OSError(ENOSPC) itself or
safetensors wrapped it ("SafetensorError: ... No space left on device (os error 28)")."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from danlu.errors import DiskFullError

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FULL_TEXT = ("os error 28", "no space left on device", "disk quota exceeded", "os error 122")
NEARLY_FULL = 16 << 20  # torch.save says only "file write failed": with less free than this, the disk is full


def is_disk_full(exc: BaseException | None, path: Path | None = None) -> bool:
    """ENOSPC / EDQUOT raised here or anywhere in the exception's chain (safetensors wraps the OS
    error in its own type); with `path`, also a write error while that disk is (nearly) full
    (torch.save's "file write failed" carries no errno)."""
    if path is not None and isinstance(exc, (OSError, RuntimeError)) and free_bytes(path) < NEARLY_FULL:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if any(t in str(exc).lower() for t in FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def disk_full_error(path: Path, needed_bytes: int | None, what: str, after: str) -> DiskFullError:
    free = free_bytes(path)
    need = f"about {_size(needed_bytes)}" if needed_bytes else "more space"
    return DiskFullError(f"disk full while saving {what} {path}: it needs {need}, {_size(free)} free. {after}",
                         hint="free space on that disk (or write to another), then run again")


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB ({n:,} bytes)"


@contextmanager
def guard_save(path: Path, *, what: str, needed_bytes=None, after: str = "Nothing was half-written in its place.",
               cleanup: Path | None = None) -> Iterator[None]:
    """Run a save; a full disk becomes DiskFullError (exit 2) after removing `cleanup` (the
    temporary folder being written). `needed_bytes` may be a number or a function giving one."""
    try:
        yield
    except Exception as exc:
        if not is_disk_full(exc, Path(path)):
            raise
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        need = needed_bytes() if callable(needed_bytes) else needed_bytes
        raise disk_full_error(Path(path), need, what, after) from None


def tensor_bytes(model, trainable_only: bool = False) -> int:
    """Bytes of a model's weights as they would be saved."""
    params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    return sum(p.numel() * p.element_size() for p in params)
