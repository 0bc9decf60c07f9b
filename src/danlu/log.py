"""Logging for the CLI: one readable line per event on stderr, rank 0 only under distributed runs."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup_logging(verbose: bool = False) -> None:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0:
        level = logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname_short)s%(message)s"))
    handler.addFilter(_ShortLevel())
    root = logging.getLogger("danlu")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # read by transformers when it is imported (later, only by commands that need it)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also hides "Loading weights" bars
    if "transformers" in sys.modules:  # imported before this (in-process callers): the variable came too late
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    _quiet_deepspeed()
    # bitsandbytes, on a CPU with AVX512-BF16, asks for a hub-downloaded kernel for its bf16 4-bit
    # path; danlu keeps its generic path there (models/load.py fit_bnb_cpu_packing): not a problem
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        lambda record: "kernels-community" not in record.getMessage())
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torch.utils.checkpoint.*")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the moment of logging, not the stream of the moment it
    was made: a CLI called in-process (tests, the web UI) swaps and closes its captured stderr."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass

    def emit(self, record):
        """Above a progress bar being drawn, never on its line."""
        from danlu import progress

        if not progress.active():
            return super().emit(record)
        try:
            progress.write(self.format(record))
        except Exception:  # noqa: BLE001 (logging must not raise)
            self.handleError(record)


def _quiet_deepspeed() -> None:
    """accelerate imports DeepSpeed whenever it is installed (unwrapping a model to save it), and
    DeepSpeed then logs "Setting accelerator to CPU" to *stdout* on a machine without a GPU, which
    corrupts `--json` output. Naming the CPU accelerator up front is what that message asks for;
    with an NVIDIA device present DeepSpeed's own detection is left alone."""
    if "DS_ACCELERATOR" not in os.environ and not any(
        os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    ):
        os.environ["DS_ACCELERATOR"] = "cpu"


class _ShortLevel(logging.Filter):
    def filter(self, record):
        record.levelname_short = {"WARNING": "warning: ", "ERROR": "error: "}.get(record.levelname, "")
        return True
