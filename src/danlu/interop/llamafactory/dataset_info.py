"""`lf:NAME` sources: one entry of a LLaMA-Factory `dataset_info.json` (in `data.dataset_dir`),
read the way LLaMA-Factory reads it (src/llamafactory/data/parser.py, loader.py, converter.py).

What follows LLaMA-Factory exactly:
  - where rows come from: `file_name` (a file, or a folder whose files share one type) under the
    dataset dir; `hf_hub_url` / `ms_hub_url` / `om_hub_url` (ModelScope first when
    USE_MODELSCOPE_HUB is set, or when there is no hf_hub_url); `script_url`; `num_samples`
    (rows drawn without replacement, then with replacement past the file's length)
  - `columns`: once an entry has a `columns` mapping, a column it does not name is unused (so an
    alpaca entry that maps only `prompt` has no response: plain text, as for c4_demo); without
    one: instruction / input / output, conversations
  - `tags` the same: with a `tags` mapping, a tag it does not name is unused
  - alpaca: user turn = prompt + "\\n" + query (each only if non-empty), `history` pairs first
  - sharegpt: a first turn with the system tag is the system prompt (else the `system` column);
    user/observation and assistant/function turns must alternate, in even number (odd for
    `ranking` rows, whose answers are `chosen` and `rejected`); a broken row is skipped
  - `ranking: true` gives preference pairs; a boolean `kto_tag` column gives KTO rows
What danlu adds: each bad row is reported with its file:line and reason (LLaMA-Factory logs
"Skipping this abnormal example"), function calls become OpenAI tool_calls, observation turns
tool results. Not supported: image/video/audio columns (danlu trains text models), dataset
scripts (they run code), `cloud_file_name`."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from danlu.data import readers
from danlu.data.formats.base import FormatOptions
from danlu.data.readers import RawRow
from danlu.errors import DataError
from danlu.interop.llamafactory.rows import entry_kind, make_converter

log = logging.getLogger(__name__)
PREFIX = "lf:"
DATA_CONFIG = "dataset_info.json"
FILE_TYPES = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}
COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None,
           "messages": "conversations", "system": None, "tools": None, "images": None, "videos": None,
           "audios": None, "chosen": None, "rejected": None, "kto_tag": None}
TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
        "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url")
FORMATTINGS = ("alpaca", "sharegpt", "openai")


def is_lf(source: str) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


@dataclass
class Entry:
    """One dataset_info.json entry, resolved (LLaMA-Factory's DatasetAttr)."""

    name: str
    load_from: str  # file | hf_hub | ms_hub | om_hub | script | cloud_file
    dataset_name: str  # file name, hub id or script folder
    info_path: Path
    formatting: str = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: dict = field(default_factory=lambda: dict(COLUMNS))
    tags: dict = field(default_factory=lambda: dict(TAGS))

    @property
    def source(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def kind(self) -> str:
        return entry_kind(self)


def read_dataset_info(dataset_dir: str | Path) -> tuple[dict, Path]:
    path = Path(dataset_dir).expanduser() / DATA_CONFIG
    if not path.is_file():
        raise DataError(f"no {DATA_CONFIG} in {Path(dataset_dir).expanduser()}", where="data.dataset_dir",
                        hint="set data.dataset_dir to the folder holding LLaMA-Factory's dataset_info.json "
                             "(LLaMA-Factory's own default is data/)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
    if not isinstance(info, dict):
        raise DataError("dataset_info.json must map dataset names to their settings", where=str(path))
    return info, path


def resolve_entry(source: str, dataset_dir: str | Path) -> Entry:
    """`lf:NAME` → its Entry (parser.get_dataset_list + DatasetAttr.join)."""
    name = source[len(PREFIX):].strip()
    info, path = read_dataset_info(dataset_dir)
    if not name:
        raise DataError("lf: needs a dataset name, e.g. lf:alpaca_en_demo", where="data.train")
    if name not in info:
        from danlu.errors import closest

        near = closest(name, list(info))
        raise DataError(f"dataset {name!r} is not defined in {path}", where=source,
                        hint=f"did you mean lf:{near}?" if near else f"defined: {', '.join(sorted(info)[:20])} ...")
    attr = info[name]
    if not isinstance(attr, dict):
        raise DataError(f"entry {name!r} must be an object", where=str(path))
    has = {k: k in attr for k in HUB_KEYS}
    if any(has.values()):
        if has["ms_hub_url"] and (_env("USE_MODELSCOPE_HUB") or not has["hf_hub_url"]):
            load_from, key = "ms_hub", "ms_hub_url"
        elif has["om_hub_url"] and (_env("USE_OPENMIND_HUB") or not has["hf_hub_url"]):
            load_from, key = "om_hub", "om_hub_url"
        else:
            load_from, key = "hf_hub", "hf_hub_url"
    else:
        load_from, key = next(((lf, k) for lf, k in (("script", "script_url"), ("cloud_file", "cloud_file_name"),
                                                     ("file", "file_name")) if k in attr), ("file", "file_name"))
    if key not in attr:
        raise DataError(f"entry {name!r} names no data (file_name, hf_hub_url, ms_hub_url or script_url)", where=str(path))
    entry = Entry(name, load_from, str(attr[key]), path)
    _join(entry, attr)
    return entry


def _join(entry: Entry, attr: dict) -> None:
    where = f"{entry.info_path} (entry {entry.name!r})"
    entry.formatting = attr.get("formatting", "alpaca")
    if entry.formatting not in FORMATTINGS:
        raise DataError(f"unknown formatting {entry.formatting!r}", where=where, hint=f"use {', '.join(FORMATTINGS)}")
    entry.ranking = bool(attr.get("ranking", False))
    entry.subset, entry.folder = attr.get("subset"), attr.get("folder")
    entry.split = attr.get("split", "train")
    entry.num_samples = attr.get("num_samples")
    if entry.num_samples is not None and (not isinstance(entry.num_samples, int) or entry.num_samples < 1):
        raise DataError(f"num_samples must be a positive integer, got {entry.num_samples!r}", where=where)
    for section, names in (("columns", entry.columns), ("tags", entry.tags)):
        if section in attr:
            given = attr[section]
            if not isinstance(given, dict):
                raise DataError(f"{section!r} must be an object", where=where)
            for key in names:  # as LLaMA-Factory: a mapping replaces every default, unnamed ones become unused
                names[key] = given.get(key)
    media = [c for c in ("videos", "audios") if entry.columns.get(c)]
    if media:
        raise DataError(f"entry {entry.name!r} has {'/'.join(media)} columns: a multimodal dataset "
                        "beyond images (danlu trains on text and images)",
                        where=where, hint="use an entry with text and images only (videos and audio are not supported)")


def _env(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("true", "1", "yes", "y")


# --- rows ------------------------------------------------------------------------------------


def entry_rows(entry: Entry, dataset_dir: str | Path) -> Iterator[RawRow]:
    """The entry's raw rows with their file:line, after num_samples."""
    if entry.load_from == "file":
        rows = _file_rows(entry, Path(dataset_dir).expanduser() / entry.dataset_name)
    elif entry.load_from == "script":
        rows = _script_rows(entry, Path(dataset_dir).expanduser() / entry.dataset_name)
    elif entry.load_from == "hf_hub":
        rows = _hub_rows(entry)
    else:
        what = {"ms_hub": "ModelScope", "om_hub": "Modelers (openMind)", "cloud_file": "cloud storage"}[entry.load_from]
        raise DataError(f"dataset {entry.name!r} is on {what} ({entry.dataset_name}); danlu reads local files "
                        f"and the Hugging Face hub for lf: entries", where=entry.source,
                        hint=f"download it and add \"file_name\" to the entry in {entry.info_path}")
    if entry.num_samples is None:
        yield from rows
        return
    yield from sample_rows(list(rows), entry.num_samples, seed=entry.name)


def sample_rows(rows: list, n: int, seed) -> list:
    """LLaMA-Factory's num_samples: a random permutation cut to n; past len(rows), random extra
    rows with replacement. Seeded by the entry's name: the same rows every run."""
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), min(n, len(rows)))
    picked += [rng.randrange(len(rows)) for _ in range(n - len(picked))] if rows else []
    return [rows[i] for i in picked]


def entry_files(entry: Entry, path: Path) -> tuple[list[Path], str]:
    """The files of a `file_name` (a file, or every file of a folder: one type only) and their type."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"file {entry.dataset_name!r} of dataset {entry.name!r} not found in {path.parent}",
                        where=entry.source, hint=f"put the file there, or fix \"file_name\" in {entry.info_path}")
    types = {FILE_TYPES.get(f.suffix.lstrip(".").lower()) for f in files}
    if not files or None in types:
        raise DataError(f"dataset {entry.name!r}: {path} holds no readable data files", where=entry.source,
                        hint=f"allowed file types: {', '.join(FILE_TYPES)}")
    if len(types) > 1:
        raise DataError(f"dataset {entry.name!r}: the files in {path} must all be of one type, found {sorted(types)}",
                        where=entry.source)
    return files, types.pop()


def _file_rows(entry: Entry, path: Path) -> Iterator[RawRow]:
    files, kind = entry_files(entry, path)
    if kind == "arrow":
        raise DataError(f"dataset {entry.name!r}: .arrow files are not read by danlu", where=entry.source,
                        hint="save the data as .jsonl or .parquet")
    for f in files:
        yield from (_text_lines(f) if kind == "text" else readers.read_rows(str(f)))


def _text_lines(path: Path) -> Iterator[RawRow]:
    """A .txt file as the `datasets` text loader reads it: one row {"text": line} per line."""
    for n, line, error in readers.lines(path):  # each line decoded on its own: a bad byte costs that line
        if error:
            yield RawRow(f"{path}:{n}", None, error)
        elif line.strip():
            yield RawRow(f"{path}:{n}", {"text": line})


def _script_rows(entry: Entry, path: Path) -> Iterator[RawRow]:
    """A `script_url` folder: its data files are read (as `datasets` does for a folder without a
    script); a loading script is never run."""
    data = [p for p in path.iterdir() if p.suffix.lstrip(".") in FILE_TYPES] if path.is_dir() else []
    if not data:
        raise DataError(f"dataset {entry.name!r} needs the loading script {entry.dataset_name!r}, which danlu does "
                        "not run (a script is code)", where=entry.source,
                        hint="export the data to .jsonl/.parquet in that folder, or point \"file_name\" at a file")
    yield from _file_rows(entry, path)


def _hub_rows(entry: Entry) -> Iterator[RawRow]:
    if _env("HF_HUB_OFFLINE") or _env("HF_DATASETS_OFFLINE"):
        raise DataError(f"dataset {entry.name!r} is on the Hugging Face hub ({entry.dataset_name}) and danlu is "
                        "offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)", where=entry.source,
                        hint=f"download it (huggingface-cli download --repo-type dataset {entry.dataset_name} "
                             f"--local-dir DIR) and set \"file_name\" in {entry.info_path}")
    try:
        import datasets

        ds = datasets.load_dataset(entry.dataset_name, name=entry.subset, data_dir=entry.folder, split=entry.split,
                                   streaming=True)
    except Exception as exc:  # noqa: BLE001 — any failure here is about the user's entry
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise DataError(f"cannot load dataset {entry.name!r} from the hub ({entry.dataset_name}): {first}",
                        where=entry.source, hint="check the network, or download it and use \"file_name\"") from None
    for n, row in enumerate(ds, 1):
        yield RawRow(f"{entry.dataset_name}[{entry.split}]:row {n}", dict(row))


# --- samples ---------------------------------------------------------------------------------


def open_source(source: str, opts: FormatOptions, kinds: tuple[str, ...]):
    """(rows, convert(row dict) → sample, format label) for iter_samples."""
    entry = resolve_entry(source, opts.dataset_dir)
    convert = make_converter(entry, opts, kinds)
    label = f"lf:{entry.formatting}" + (" ranking" if entry.ranking else "") + (" kto" if entry.kind == "unpaired" else "")
    log.info("%s: %s (%s, %s rows)", source, entry.dataset_name, label, entry.kind)
    return entry_rows(entry, opts.dataset_dir), convert, label
