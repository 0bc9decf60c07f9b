"""Input and output shared by every `danlu data` command: rows with their file:line under a
bad-row policy, outputs written atomically (a temp file renamed at the end, so a crash never
leaves half a file under the real name), a guard that the input is never the output, and the
summary every command ends with."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from danlu.data.readers import RawRow, read_rows
from danlu.errors import DataError, UserError

ON_BAD_ROW = ("error", "skip")
OUTPUT_SUFFIXES = (".jsonl", ".json")


def iter_good_rows(source: str, on_bad_row: str = "error", summary: Summary | None = None) -> Iterator[RawRow]:
    """Rows of `source` that parsed. A row that did not (invalid JSON or UTF-8, not an object)
    stops the command with its file:line (on_bad_row='error') or is counted and skipped."""
    if on_bad_row not in ON_BAD_ROW:
        raise UserError(f"on_bad_row must be one of {', '.join(ON_BAD_ROW)}, got {on_bad_row!r}", where="--on-bad-row")
    for raw in read_rows(source):
        if raw.data is not None:
            yield raw
        elif on_bad_row == "error":
            raise DataError(raw.error or "unreadable row", where=raw.where,
                            hint="`danlu data validate` lists every problem; --on-bad-row skip skips such rows")
        elif summary is not None:  # a row read like any other: counted in, then dropped (as validate counts it)
            summary.rows_in += 1
            summary.drop("unreadable")


def default_output(source: str, tag: str, suffix: str = ".jsonl") -> Path:
    """data/train.jsonl + 'clean' → data/train.clean.jsonl (next to the input)."""
    p = Path(source)
    return p.with_name(f"{p.stem}.{tag}{suffix}")


def check_output(output: str | Path, inputs: list[str] | tuple[str, ...], *, suffixes=OUTPUT_SUFFIXES) -> Path:
    """The output path, refused if it is one of the inputs (inputs are never modified) or has
    a suffix danlu cannot write."""
    out = Path(output)
    if out.is_dir():
        raise UserError("the output is a folder; name a file", where=str(out))
    if suffixes and out.suffix.lower() not in suffixes:
        raise UserError(f"cannot write {out.suffix or 'a file without suffix'!r}", where=str(out),
                        hint=f"name the output {' or '.join('*' + s for s in suffixes)}")
    for src in inputs:
        p = Path(src)
        if p.exists() and out.exists() and os.path.samefile(p, out) or out.resolve() == p.resolve():
            raise UserError("the output would overwrite the input", where=str(out),
                            hint="danlu never modifies its input: choose another output path with -o")
        if p.is_dir() and out.resolve().is_relative_to(p.resolve()):
            raise UserError("the output lies inside the input folder (it would be read back next time)",
                            where=str(out), hint="write it elsewhere with -o")
    return out


class AtomicRowWriter:
    """Write rows to OUTPUT.tmp-PID, then rename onto OUTPUT on success (JSONL, or a JSON array
    for *.json). On an exception the temp file is removed and OUTPUT is left as it was."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.as_array = self.path.suffix.lower() == ".json"
        self.count = 0
        self._fh = None

    def __enter__(self) -> AtomicRowWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.tmp, "w", encoding="utf-8")
        if self.as_array:
            self._fh.write("[")
        return self

    def write(self, row: dict) -> None:
        text = json.dumps(row, ensure_ascii=False, default=str)  # dates, decimals from Parquet/CSV → text
        if self.as_array:
            text = ("\n  " if self.count == 0 else ",\n  ") + text
        else:
            text += "\n"
        self._fh.write(text)
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if self.as_array:
                self._fh.write("\n]\n" if self.count else "]\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self.tmp, self.path)
        else:
            self._fh.close()
            self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, doc) -> None:
    """A JSON document (a report) written to a temp file and renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1)  # written piece by piece, never one big string
    os.replace(tmp, path)


@dataclass
class Summary:
    """What a command did: rows in and out, rows changed and dropped per rule, other counts."""

    command: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    changed: dict[str, int] = field(default_factory=dict)  # rule → rows it changed
    dropped: dict[str, int] = field(default_factory=dict)  # rule → rows it dropped
    counts: dict[str, object] = field(default_factory=dict)  # anything else worth a line
    seconds: float = 0.0
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def change(self, rule: str, n: int = 1) -> None:
        self.changed[rule] = self.changed.get(rule, 0) + n

    def drop(self, rule: str, n: int = 1) -> None:
        self.dropped[rule] = self.dropped.get(rule, 0) + n

    def done(self) -> Summary:
        self.seconds = time.perf_counter() - self._t0
        return self

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"command": self.command, "inputs": self.inputs, "outputs": self.outputs, "rows_in": self.rows_in,
                "rows_out": self.rows_out, "changed": self.changed, "dropped": self.dropped, "counts": self.counts,
                "seconds": round(self.seconds, 3), "rows_per_s": round(self.rows_per_s, 1)}
