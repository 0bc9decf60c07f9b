"""Progress bars for every command that can take more than a few seconds (train, eval, export,
merge, chat and serve start-up, the data tools): one tqdm bar on stderr with elapsed time and ETA.

Shown when stderr is a terminal; hidden when it is piped or written to a log (no carriage-return
garbage) and with `danlu --quiet`. DANLU_PROGRESS=1 shows them anyway (the web UI's job logs, which
collapse the redraws), DANLU_PROGRESS=0 hides them. Log lines printed while a bar is drawn go
above it (`write`), never onto the bar's line."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator

ENV = "DANLU_PROGRESS"


def enabled() -> bool:
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def set_quiet(quiet: bool) -> None:
    """`danlu --quiet`: no bars in this process or the processes it starts."""
    if quiet:
        os.environ[ENV] = "0"


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
        leave: bool = False, **kwargs):
    """A tqdm bar (disabled when bars are off: then it only iterates / counts)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=not enabled(),
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **kwargs)


def track(iterable: Iterable, *, desc: str, total: int | None = None, unit: str = "it") -> Iterator:
    """Iterate with a bar; the bar closes when the loop ends or breaks."""
    with bar(iterable, total=total, desc=desc, unit=unit) as b:
        yield from b


class Stages:
    """A bar over a few named steps of one long operation (loading: tokenizer, base, adapter ...)."""

    def __init__(self, desc: str, names: list[str]):
        self.desc, self._bar = desc, bar(total=len(names), desc=desc, unit="step")
        self._started = False

    def next(self, name: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"{self.desc}: {name}", refresh=True)

    def close(self) -> None:
        self._bar.update(self._bar.total - self._bar.n)
        self._bar.close()

    def abort(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def stages(desc: str, names: list[str]):
    s = Stages(desc, names)
    try:
        yield s
    finally:
        s.abort() if sys.exc_info()[0] else s.close()


def active() -> bool:
    """A bar is drawn right now (log lines must then be written above it)."""
    from tqdm import tqdm

    return any(not getattr(b, "disable", True) for b in list(getattr(tqdm, "_instances", [])))


def write(line: str) -> None:
    """One line on stderr, above any bar being drawn."""
    if active():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
