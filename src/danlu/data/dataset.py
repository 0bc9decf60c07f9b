"""Rows → samples → tokenised datasets, under the data policies (on_bad_row, overlong), with a
report of everything kept and dropped."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path

from danlu.chat.messages import RowError, Text
from danlu.data.encode import Encoded, SampleDropped, encode_conversation, encode_text, fit_length
from danlu.data.formats import FORMATS, FormatOptions, detect_format
from danlu.data.readers import read_rows
from danlu.data.report import DataReport
from danlu.data.vlm import VlmDataset, encode_vlm_sample
from danlu.errors import DataError
from danlu.interop.llamafactory import dataset_info as lf

log = logging.getLogger(__name__)


def iter_samples(
    sources: str | list[str],
    *,
    fmt: str = "auto",
    kinds: tuple[str, ...] = ("conversation", "text"),
    opts: FormatOptions | None = None,
    on_bad_row: str = "skip",
    report: DataReport | None = None,
) -> Iterator:
    """Samples of the given kinds from every source; bad rows are skipped (and reported) or raise.
    A source `lf:NAME` is an entry of a LLaMA-Factory dataset_info.json (see interop/llamafactory/dataset_info.py)."""
    opts = opts or FormatOptions()
    report = report if report is not None else DataReport()
    for source in [sources] if isinstance(sources, str) else sources:
        report.sources.append(source)
        rows, convert = _open_source(source, fmt, kinds, opts, report)
        unfilled = _PlaceholderCheck(source)
        for raw in rows:
            report.rows_read += 1
            try:
                if raw.error:
                    raise RowError(raw.error)
                sample = convert(raw.data)
                check_images(sample, source, raw.where, opts.max_image_pixels)
            except RowError as exc:
                if on_bad_row == "error":
                    raise DataError(str(exc), where=raw.where,
                                    hint="fix the row, or set data.on_bad_row: skip to skip and report bad rows") from None
                report.drop(raw.where, str(exc))
                continue
            sample.where = raw.where
            unfilled.check(sample)
            yield sample
        report.formats.setdefault(source, fmt if fmt != "auto" else "unknown")


def _open_source(source: str, fmt: str, kinds: tuple[str, ...], opts: FormatOptions, report: DataReport):
    """(rows, convert(row) → sample): a LLaMA-Factory entry, a named format, or one detected on
    the first row that parses."""
    if lf.is_lf(source):
        if fmt != "auto":
            log.warning("%s: data.format %s is not used: a LLaMA-Factory entry names its own formatting", source, fmt)
        rows, convert, label = lf.open_source(source, opts, kinds)
        report.formats[source] = label
        return rows, convert
    converter = None if fmt == "auto" else FORMATS.get(fmt, where="data.format")()
    if converter is not None and converter.kind not in kinds:
        raise DataError(f"format {fmt!r} gives {converter.kind} rows; this stage needs {' or '.join(kinds)}",
                        where="data.format")

    def convert(row: dict):
        nonlocal converter
        if converter is None:
            name = detect_format(row, kinds)
            if name is None:
                raise RowError(f"no known {'/'.join(kinds)} format has fields {sorted(row)}")
            converter = FORMATS.get(name)()
            report.formats[source] = name
            log.info("%s: detected format %s (fields %s)", source, name, ", ".join(sorted(row)))
        return converter.convert(row, opts)

    return read_rows(source), convert


def check_images(sample, source: str, where: str, max_pixels: int) -> None:
    """Each image of a sample (vision-language rows) exists, opens and is within max_pixels, else
    a RowError (ImageError) counted with the row's file:line; relative paths are resolved against
    the data file's folder when the format gave no other (LLaMA-Factory entries: dataset_dir)."""
    images = getattr(sample, "images", None)
    if not images:
        return
    folder = "" if lf.is_lf(source) or "://" in source else str(Path(source).expanduser().parent)
    for ref in images:
        ref.where = where
        if not ref.base_dir:
            ref.base_dir = folder
        ref.check(max_pixels)


class _PlaceholderCheck:
    """Warns once per source when a text still holds {{key}} after data.placeholders: a model
    trained on it would say "{{name}}" literally (LLaMA-Factory's identity dataset has them)."""

    PATTERN = re.compile(r"\{\{\s*(\w+)\s*\}\}")

    def __init__(self, source: str):
        self.source, self.warned = source, False

    def check(self, sample) -> None:
        if self.warned:
            return
        found = sorted({m for text in _texts(sample) for m in self.PATTERN.findall(text)})
        if found:
            self.warned = True
            keys = ", ".join(f"{k}: ..." for k in found)
            log.warning("%s: the data holds %s, which no placeholder fills; the model would learn it literally. "
                        "Set data.placeholders: {%s}", sample.where, ", ".join("{{" + k + "}}" for k in found), keys)


def _texts(sample) -> Iterator[str]:
    if isinstance(sample, Text):
        yield sample.text
        return
    for key in ("messages", "prompt", "chosen", "rejected", "completion"):
        for m in getattr(sample, key, None) or []:
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                yield m["content"]


def encode_sample(sample, tpl, data_cfg, max_length: int, report: DataReport) -> Encoded | None:
    try:
        if getattr(sample, "images", None):
            raise RowError("the row has images and the model is text-only; train a vision-language model "
                           "(e.g. builtin:tiny-vl) or drop the images")
        if isinstance(sample, Text):
            enc = encode_text(sample, tpl.tokenizer, max_length=max_length)
        else:
            enc = encode_conversation(sample, tpl, train_on_prompt=data_cfg.train_on_prompt,
                                      mask_history=data_cfg.mask_history, max_length=max_length)
        if len(enc) > max_length and data_cfg.overlong == "truncate":
            report.truncate(sample.where, len(enc), enc.cut)
        return fit_length(enc, max_length, data_cfg.overlong, sample.where)
    except (SampleDropped, RowError) as exc:
        if isinstance(exc, RowError) and data_cfg.on_bad_row == "error":
            raise DataError(str(exc), where=sample.where) from None
        report.drop(sample.where, str(exc))
        return None


class TokenizedDataset:
    """A list of encoded samples as the dicts the collators expect."""

    def __init__(self, items: list[Encoded]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        e = self.items[i]
        return {"input_ids": e.input_ids, "labels": e.labels}

    @property
    def lengths(self) -> list[int]:
        return [len(e) for e in self.items]


def split_eval(items: list, fraction: float, seed: int) -> tuple[list, list]:
    if fraction <= 0 or len(items) < 2:
        return items, []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(len(items) * fraction)))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def build_sft_datasets(ctx, kinds: tuple[str, ...] = ("conversation", "text")):
    """Train and eval TokenizedDatasets for causal-LM stages; reports land in ctx.reports."""
    cfg = ctx.config
    data_cfg, max_length = cfg.data, cfg.train.max_length
    opts = ctx.format_options()

    def build(sources, split: str) -> TokenizedDataset:
        report = DataReport(split=split)
        items = []
        for sample in iter_samples(sources, fmt=data_cfg.format, kinds=kinds, opts=opts,
                                   on_bad_row=data_cfg.on_bad_row, report=report):
            if getattr(ctx, "processor", None) is not None:  # a vision-language model (data/vlm.py)
                enc = encode_vlm_sample(sample, ctx, max_length, report)
            else:
                enc = encode_sample(sample, ctx.template, data_cfg, max_length, report)
            if enc is not None:
                items.append(enc)
            if split == "train" and data_cfg.max_samples and len(items) >= data_cfg.max_samples:
                break
        report.kept = len(items)
        report.lengths = [len(e) for e in items]
        report.label_tokens = sum(e.num_labels for e in items)
        ctx.reports.append(report)
        report.log_summary()
        if not items:
            raise DataError(f"no usable {split} samples in {sources}", where=f"data.{split}",
                            hint="see the dropped rows above (or data_report.json) for why each row was dropped")
        return dataset_cls(items)

    dataset_cls = VlmDataset if getattr(ctx, "processor", None) is not None else TokenizedDataset
    train = build(data_cfg.train, "train")
    if data_cfg.eval:
        return train, build(data_cfg.eval, "eval")
    if data_cfg.eval_split > 0:
        seed = data_cfg.shuffle_seed if data_cfg.shuffle_seed is not None else cfg.train.seed
        kept, held = split_eval(train.items, data_cfg.eval_split, seed)
        return dataset_cls(kept), dataset_cls(held)
    return train, None
