"""Read rows from JSONL / JSON / CSV / Parquet files, folders, or a hub dataset, each row with
the place it came from ("file.jsonl:12"), streaming where the format allows."""

from __future__ import annotations

import bisect
import csv
import json
import re
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


# --- bytes → text, one line at a time -------------------------------------------------------------

BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
SNIFF = 8192  # bytes looked at for a BOM or NUL bytes
NESTED = "nested too deeply to read (a JSON value inside hundreds of levels of brackets)"


def _encoding(path: Path) -> str:
    """'utf-8' (a UTF-8 BOM is skipped), or 'utf-16' / 'utf-32' when the file starts with their BOM.
    A file with NUL bytes and no such BOM is not UTF-8 text: refused naming the byte."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF)
    for bom, enc in BOMS:
        if head.startswith(bom):
            return enc
    nul = head.find(b"\x00")
    if nul >= 0:
        looks16 = head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4
        what = "UTF-16 text without a byte-order mark" if looks16 else "a binary file"
        raise DataError(f"not a UTF-8 text file: a NUL byte at byte {nul} (it looks like {what})",
                        where=str(path),
                        hint="save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in > out`), or give the right file")
    return "utf-8"


def lines(path: Path, meter: _Meter | None = None) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) per line, or (line number, None, why) for a line that is not valid
    UTF-8: each line is decoded on its own, so one bad byte costs that line only. A UTF-8 BOM is
    dropped; a UTF-16/32 file (with its BOM) is decoded as such. Line ends (LF, CRLF) stripped."""
    enc = _encoding(path)
    if enc != "utf-8":
        with open(path, encoding=enc, errors="replace", newline=None) as fh:
            for n, line in enumerate(fh, 1):
                yield n, line.rstrip("\r\n"), None
        return
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if meter is not None and n % 512 == 0:
                meter.at(fh.tell())
            if n == 1 and raw.startswith(BOMS[0][0]):
                raw = raw[3:]
            try:
                yield n, raw.rstrip(b"\r\n").decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield n, None, f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} ({exc.reason})"


def _read_text(path: Path) -> tuple[str, list[int]]:
    """The whole file as text, and the offsets of characters that were not valid UTF-8 (kept as
    lone surrogates so a reader can name and skip exactly the rows that hold them)."""
    enc = _encoding(path)
    if enc != "utf-8":
        return path.read_text(encoding=enc, errors="replace"), []
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    return text, [m.start() for m in _BAD_CHAR.finditer(text)]


_BAD_CHAR = re.compile("[\udc80-\udcff]")


def _bad_reason(text: str, bad: list[int], start: int, end: int) -> str | None:
    k = bisect.bisect_left(bad, start)
    if k < len(bad) and bad[k] < end:
        pos = bad[k]
        col = pos - text.rfind("\n", 0, pos)
        return f"not valid UTF-8: byte 0x{ord(text[pos]) - 0xDC00:02x} at column {col}"
    return None


# --- readers ---------------------------------------------------------------------------------------


def _parse_object(line: str) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, NESTED
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def _jsonl(path: Path, meter: _Meter | None = None) -> Iterator[RawRow]:
    for lineno, line, error in lines(path, meter):
        where = f"{path}:{lineno}"
        if error:
            yield RawRow(where, None, error)
        elif line.strip():
            obj, error = _parse_object(line)
            yield RawRow(where, obj, error)


def _json(path: Path, meter: _Meter | None = None) -> Iterator[RawRow]:
    """A JSON array of objects (or one object holding such an array), each with its line."""
    text, bad = _read_text(path)
    i = _skip_ws(text, 0)
    if i < len(text) and text[i] == "{":
        yield from _json_object(path, text, bad)
        return
    if i >= len(text) or text[i] != "[":
        raise DataError("a .json data file must hold an array of objects", where=f"{path}:1")
    yield from _json_array(path, text, bad, i + 1)


def _json_object(path: Path, text: str, bad: list[int]) -> Iterator[RawRow]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line in a .json file (the datasets library reads it)
            yield from _jsonl(path)
            return
        raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
    except RecursionError:
        raise DataError(NESTED, where=f"{path}:1") from None
    arrays = [v for v in obj.values() if isinstance(v, list)] if isinstance(obj, dict) else []
    if len(arrays) == 1:
        if bad:  # items of a nested array carry no offsets: name the first bad byte's line
            line = text.count("\n", 0, bad[0]) + 1
            raise DataError(_bad_reason(text, bad, 0, len(text)), where=f"{path}:{line}",
                            hint="save the file as UTF-8")
        for n, item in enumerate(arrays[0]):
            yield RawRow(f"{path}:item {n + 1}", item if isinstance(item, dict) else None,
                         None if isinstance(item, dict) else "expected a JSON object")
        return
    yield RawRow(f"{path}:1", obj, _bad_reason(text, bad, 0, len(text)))


def _json_array(path: Path, text: str, bad: list[int], i: int) -> Iterator[RawRow]:
    decoder = json.JSONDecoder()
    line, pos = 1, 0
    while True:
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == "]":
            return
        line += text.count("\n", pos, i)
        pos = i
        where = f"{path}:{line}"
        try:
            obj, end = decoder.raw_decode(text, i)
            error = _bad_reason(text, bad, i, end)
            if error is None and not isinstance(obj, dict):
                error = f"expected a JSON object, got {type(obj).__name__}"
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
        except RecursionError:
            obj, end, error = None, _value_end(text, i, where), NESTED
        yield RawRow(where, None if error else obj, error)
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "]":
            return
        else:
            raise DataError("expected ',' or ']' between array items", where=f"{path}:{line + text.count(chr(10), pos, i)}")


def _value_end(text: str, i: int, where: str) -> int:
    """Where the JSON value starting at text[i] ends, found without recursion (for a value too
    deeply nested for the json module), so the items after it are still read."""
    depth, in_str, k = 0, False, i
    while k < len(text):
        c = text[k]
        if in_str:
            if c == "\\":
                k += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    raise DataError("a JSON value is never closed", where=where)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _csv(path: Path, meter: _Meter | None = None) -> Iterator[RawRow]:
    """CSV rows with the line each starts on; a row holding bytes that are not UTF-8 is reported
    (and only that row is lost)."""
    enc = _encoding(path)
    errors = "surrogateescape" if enc == "utf-8" else "replace"
    with open(path, encoding="utf-8-sig" if enc == "utf-8" else enc, errors=errors, newline="") as fh:
        reader = csv.DictReader(fh)
        _ = reader.fieldnames  # reads the header row
        start = reader.line_num + 1
        for row in reader:
            if meter is not None and reader.line_num % 512 == 0:
                meter.at(fh.buffer.tell())
            where, start = f"{path}:{start}", reader.line_num + 1
            fields = {k: v for k, v in row.items() if k is not None}
            bad = next((k for k, v in fields.items() if isinstance(v, str) and _BAD_CHAR.search(v)), None)
            if bad is not None:
                yield RawRow(where, None, f"not valid UTF-8 (in column {bad!r})")
            else:
                yield RawRow(where, fields)


def _txt(path: Path, meter: _Meter | None = None) -> Iterator[RawRow]:
    """Plain text: one document per blank-line-separated paragraph. A line that is not valid
    UTF-8 is reported on its own and ends the paragraph it was in."""
    buf, start = [], 1
    for n, line, error in lines(path, meter):
        if line is not None and line.strip():
            if not buf:
                start = n
            buf.append(line)
            continue
        if buf:
            yield RawRow(f"{path}:{start}", {"text": "\n".join(buf)})
            buf = []
        if error:
            yield RawRow(f"{path}:{n}", None, error)
    if buf:
        yield RawRow(f"{path}:{start}", {"text": "\n".join(buf)})


def _parquet(path: Path, meter: _Meter | None = None) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet needs pyarrow", where=str(path), hint="pip install pyarrow") from None
    import pyarrow

    try:
        table = pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                        where=str(path), hint="check the file, or give it the suffix of what it holds (.jsonl, .csv, ...)") from None
    n = 0
    for batch in table.iter_batches(batch_size=1024):
        if meter is not None:
            meter.at(n, of=table.metadata.num_rows)
        for row in batch.to_pylist():
            n += 1
            yield RawRow(f"{path}:row {n}", row)


PROGRESS_MIN_BYTES = 4 << 20  # smaller files are read in well under a second: no bar


class _Meter:
    """A progress bar over one data file (its bytes; parquet: its rows), shown for files of
    PROGRESS_MIN_BYTES or more (.json arrays are parsed whole: no bar moves for them)."""

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
