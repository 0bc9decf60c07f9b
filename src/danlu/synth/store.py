"""Where `danlu synth` puts what it receives: rows appended to the output file the moment they
arrive (one write per reply, then fsync), each with an `id` naming the work it came from — so a
crash loses nothing already received and a re-run skips work already done. A line torn by a
crash in the middle of a write is cut off when the file is opened again.

Also the filter that keeps generated rows unique: exact (normalised) and near duplicates of
earlier rows, seeds included, by MinHash similarity of character 3-grams."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from danlu.errors import DataError
from danlu.workbench.minhash import MinHashParams, Signer, exact_hash
from danlu.workbench.rowtext import match_key

log = logging.getLogger(__name__)


class AppendLog:
    """An append-only JSONL file of rows with ids."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def scan(self, on_row: Callable[[dict], None]) -> int:
        """Pass each row already written to `on_row` (one at a time: a big output is never held);
        a torn last line (no newline, or not JSON) is cut off. Returns the number of rows."""
        if not self.path.exists():
            return 0
        rows, good_end = 0, 0
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    row = json.loads(line) if line.endswith(b"\n") else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    row = None
                if row is None:
                    if fh.read(1):  # not the last line: real damage, not a crash mid-write
                        raise DataError("this line of an earlier synth output is not valid JSON",
                                        where=f"{self.path}:{lineno}",
                                        hint="fix or delete the line, then run again to resume")
                    log.warning("%s:%d: cut off a line torn by an earlier crash", self.path, lineno)
                    break
                if not isinstance(row, dict) or "id" not in row:
                    raise DataError("a row without an 'id': this file was not written by danlu synth",
                                    where=f"{self.path}:{lineno}", hint="choose another output with -o")
                on_row(row)
                rows += 1
                good_end += len(line)
        if good_end < self.path.stat().st_size:
            os.truncate(self.path, good_end)
        return rows

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


class UniqueTexts:
    """Texts seen so far; `reject_reason(text)` says 'duplicate' / 'near duplicate' or adds it."""

    def __init__(self, threshold: float = 0.7, ngram: int = 3):
        self.threshold = threshold
        self.signer = Signer(MinHashParams(threshold=threshold, num_perm=64, ngram=ngram))
        self.exact: set[int] = set()
        self.sigs = np.zeros((256, 64), dtype=np.uint32)  # rows [0, n) in use; doubled when full
        self.n = 0

    def reject_reason(self, text: str) -> str | None:
        key = match_key(text)
        h = exact_hash(key)
        if h in self.exact:
            return "duplicate"
        sig = self.signer.sign([key])[0]
        if self.n and (self.sigs[:self.n] == sig).mean(axis=1).max() >= self.threshold:
            return "near duplicate"
        self.exact.add(h)
        if self.n == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.zeros_like(self.sigs)])
        self.sigs[self.n] = sig
        self.n += 1
        return None
