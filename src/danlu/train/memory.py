"""Peak resident memory of CPU runs. glibc keeps freed heap pages: a step's activations are
freed, but scattered long-lived blocks pin the pages between them, so a process's RSS climbs to
about twice its live bytes over a run (measured on the CPU bench: 1.6 GB live, 3.3 GB RSS).
`malloc_trim(0)` every TRIM_EVERY optimizer steps hands the free pages back (madvise), so the peak
RSS follows the live peak. Cost: the next step faults those pages in again — trimming after every
step cost ~15-20% of the CPU bench's step time (issue 24: steps 3..12 took 10.7 CPU-s trimmed every
step, 9.7 every 4th step, 9.0 never, at about the same peak RSS over those steps);
`train.release_memory: false` turns it off."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

from transformers import TrainerCallback

log = logging.getLogger(__name__)
TRIM_EVERY = 4  # optimizer steps between heap trims (docs/notes/issue-24.md, third session)


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def trim_available() -> bool:
    return _libc() is not None


def release_free_heap() -> bool:
    """Return free heap pages to the OS (glibc); False where that is not possible."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class ReleaseMemory(TrainerCallback):
    """After every `every`-th optimizer step (activations and gradients freed): release_free_heap()."""

    def __init__(self, every: int = TRIM_EVERY):
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            release_free_heap()


def release_memory_callback(cfg) -> ReleaseMemory | None:
    """The callback when the run asks for it, runs on CPU, and the C library can trim."""
    import torch

    if not cfg.train.release_memory or torch.cuda.is_available():
        return None
    if not trim_available():
        log.debug("train.release_memory: this C library has no malloc_trim; RSS is left to the allocator")
        return None
    return ReleaseMemory()
