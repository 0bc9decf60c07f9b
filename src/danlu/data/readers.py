"""Read rows from JSONL / JSON / CSV / Parquet files, folders, or a hub dataset, each row with
the place it came from ("file.jsonl:12"), streaming where the format allows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


@dataclass
class RawRow:
    where: str
    data: dict | None  # None when the row could not be parsed
    error: str | None = None


def read_rows(source: str) -> Iterator[RawRow]:
    """Rows of one source: a file, a folder of files, or a hub dataset ('name' or 'name:split')."""
    p = Path(source).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"folder {p} holds no data files ({', '.join(SUFFIXES)})")
        for f in files:
            yield from read_rows(str(f))
        return
    if p.is_file():
        reader = {
            ".jsonl": _jsonl,
            ".json": _json,
            ".csv": _csv,
            ".parquet": _parquet,
            ".txt": _txt,
        }.get(p.suffix.lower())
        if reader is None:
            raise DataError(f"unsupported data file type {p.suffix!r}", where=str(p), hint=f"use {', '.join(SUFFIXES)}")
        with _Meter(p) as meter:
            yield from reader(p, meter)
        return
    if looks_like_path(source):
        raise DataError(f"data file not found: {source}")
    if source.startswith("lf:"):  # read by interop/llamafactory/dataset_info.py through iter_samples, which knows data.dataset_dir
        raise DataError(f"{source} is a LLaMA-Factory dataset entry, not a file",
                        hint="use it as data.train in a config, with data.dataset_dir set to its dataset_info.json folder")
    yield from _hub(source)


def looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.lower().endswith(SUFFIXES) or "\\" in source


def _jsonl(path: Path, meter=None) -> Iterator[RawRow]:
    with open(path, encoding="utf-8", errors="strict") as fh:
        lineno = 0
        while True:
            if meter is not None and lineno % 512 == 0:
                meter.at(fh.buffer.tell())
            try:
                line = fh.readline()
            except UnicodeDecodeError as exc:
                yield RawRow(f"{path}:{lineno + 1}", None, f"not valid UTF-8 ({exc.reason})")
                return
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(f"{path}:{lineno}", None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield RawRow(f"{path}:{lineno}", None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield RawRow(f"{path}:{lineno}", obj)


def _json(path: Path, meter=None) -> Iterator[RawRow]:
    """A JSON array of objects (or one object holding such an array), each with its line."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i < len(text) and text[i] == "{":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one object per line in a .json file (the datasets library reads it)
                yield from _jsonl(path, meter)
                return
            raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
        arrays = [v for v in obj.values() if isinstance(v, list)] if isinstance(obj, dict) else []
        if len(arrays) == 1:
            for n, item in enumerate(arrays[0]):
                yield RawRow(f"{path}:item {n + 1}", item if isinstance(item, dict) else None,
                             None if isinstance(item, dict) else "expected a JSON object")
            return
        yield RawRow(f"{path}:1", obj)
        return
    if i >= len(text) or text[i] != "[":
        raise DataError("a .json data file must hold an array of objects", where=f"{path}:1")
    i, line, pos = i + 1, 1, 0
    while True:
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == "]":
            return
        line += text.count("\n", pos, i)
        pos = i
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
        where = f"{path}:{line}"
        if meter is not None:
            meter.at(end, of=len(text))
        if isinstance(obj, dict):
            yield RawRow(where, obj)
        else:
            yield RawRow(where, None, f"expected a JSON object, got {type(obj).__name__}")
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "]":
            return
        else:
            raise DataError("expected ',' or ']' between array items", where=f"{path}:{line + text.count(chr(10), pos, i)}")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _csv(path: Path, meter=None) -> Iterator[RawRow]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if meter is not None and reader.line_num % 512 == 0:
                meter.at(fh.buffer.tell())
            yield RawRow(f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None})


def _txt(path: Path, meter=None) -> Iterator[RawRow]:
    """Plain text: one document per blank-line-separated paragraph."""
    with open(path, encoding="utf-8") as fh:
        buf, start = [], 1
        for n, line in enumerate(fh, 1):
            if meter is not None and n % 512 == 0:
                meter.at(fh.buffer.tell())
            if line.strip():
                if not buf:
                    start = n
                buf.append(line.rstrip("\n"))
            elif buf:
                yield RawRow(f"{path}:{start}", {"text": "\n".join(buf)})
                buf = []
        if buf:
            yield RawRow(f"{path}:{start}", {"text": "\n".join(buf)})


def _parquet(path: Path, meter=None) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet needs pyarrow", where=str(path), hint="pip install pyarrow") from None
    n = 0
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=1024):
        if meter is not None:
            meter.at(n, of=pf.metadata.num_rows)
        for row in batch.to_pylist():
            n += 1
            yield RawRow(f"{path}:row {n}", row)


PROGRESS_MIN_BYTES = 4 << 20  # smaller files are read in well under a second: no bar


class _Meter:
    """A progress bar over one data file (its bytes; a .json array: its characters; parquet: rows),
    shown for files of PROGRESS_MIN_BYTES or more."""

    def __init__(self, path: Path):
        self.path, self.bar, self.total = path, None, path.stat().st_size

    def __enter__(self):
        if self.total >= PROGRESS_MIN_BYTES:
            from danlu.progress import bar

            self.bar = bar(total=self.total, desc=f"reading {self.path.name}", unit="B", unit_scale=True)
        return self

    def at(self, pos: int, of: int | None = None) -> None:
        if self.bar is None:
            return
        if of is not None and of != self.bar.total:
            self.bar.total = of
        self.bar.update(max(0, pos - self.bar.n))

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _hub(source: str) -> Iterator[RawRow]:
    from danlu.models.load import hub_endpoint, hub_reachable

    name, _, split = source.partition(":")
    if not hub_reachable():  # streamed from the hub: say so at once, not after minutes of retries
        raise DataError(
            f"{source!r} is not a file here, and as a hub dataset it cannot be read: {hub_endpoint()} is not "
            "reachable from this machine",
            where="data.train",
            hint="check the file name (relative to where you run danlu); for a hub dataset, download it where "
                 "there is network and give the local file, or set HF_ENDPOINT to a mirror you can reach",
        )
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as exc:  # noqa: BLE001 — any failure here is the user's source
        raise DataError(
            f"cannot read {source!r} as a file or a hub dataset: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            where="data.train",
            hint="check the path (relative to where you run danlu) or the dataset name; offline, use a local file",
        ) from None
    for n, row in enumerate(ds):
        yield RawRow(f"{name}[{split or 'train'}]:row {n + 1}", dict(row))
