"""Rows that name an image or an audio file ({image, label} / {audio, text} in .jsonl / .csv /
.json / .parquet, paths relative to the data file; images also as a folder per class), checked at
load: a missing, unreadable or too large file is counted in data_report.json with its file:line,
or stops the run (exit 2) under data.on_bad_row: error. The datasets decode lazily, one row at a
time, so the data never sits in memory as tensors."""

from __future__ import annotations

from pathlib import Path

from danlu.data.media import MediaError, MediaRow, class_folder_rows, is_class_folder, media_path
from danlu.data.readers import read_rows
from danlu.data.report import DataReport
from danlu.errors import DataError


def _sources(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _data_file(where: str) -> Path | None:
    p = Path(where.rsplit(":", 1)[0])
    return p if p.is_file() else None


def _row(raw, media_col: str, target_col: str) -> MediaRow:
    data = raw.data
    missing = [c for c in (media_col, target_col) if c not in data]
    if missing:
        raise MediaError(f"missing field {missing[0]!r} (the row has: {', '.join(list(data)[:8])})")
    target = data[target_col]
    if isinstance(target, (list, dict)) or target is None or str(target).strip() == "":
        raise MediaError(f"field {target_col!r} is empty or not a string / number: {target!r}")
    return MediaRow(raw.where, media_path(data[media_col], raw.where, _data_file(raw.where)), str(target))


def media_rows(sources, *, media_col: str, target_col: str, on_bad_row: str, report: DataReport,
               check, folders: bool = False) -> list[MediaRow]:
    """The usable rows of every source; `check(row)` opens the file (raises MediaError)."""
    rows = []
    for source in _sources(sources):
        report.sources.append(source)
        if folders and is_class_folder(source):
            report.formats[source] = "folder per class"
            found = class_folder_rows(source)
        else:
            report.formats[source] = f"{{{media_col}, {target_col}}} rows"
            found = list(read_rows(source))
        for raw in found:
            report.rows_read += 1
            try:
                if not isinstance(raw, MediaRow):
                    if raw.data is None:
                        raise MediaError(raw.error or "malformed row")
                    raw = _row(raw, media_col, target_col)
                check(raw)
                rows.append(raw)
            except MediaError as exc:
                if on_bad_row == "error":
                    raise DataError(str(exc), where=raw.where,
                                    hint="fix or remove that row, or set data.on_bad_row: skip to count and skip "
                                         "such rows (data_report.json lists them)") from None
                report.drop(raw.where, str(exc))
    return rows


def finish_report(ctx, report: DataReport, n: int, lengths: list[int] | None = None) -> None:
    report.kept = n
    report.lengths = lengths or []
    ctx.reports.append(report)
    report.log_summary()
    if not n:
        raise DataError(f"no usable {report.split} rows in {report.sources}", where=f"data.{report.split}",
                        hint="see data_report.json for why each row was dropped")


def split_rows(ctx, train: list, split: str = "train"):
    """(train, held-out or None) by data.eval_split, when no eval file is given."""
    from danlu.data.dataset import split_eval

    data_cfg = ctx.config.data
    if data_cfg.eval_split <= 0:
        return train, None
    seed = data_cfg.shuffle_seed if data_cfg.shuffle_seed is not None else ctx.config.train.seed
    train, held = split_eval(train, data_cfg.eval_split, seed)
    return train, held or None


class ImageRows:
    """Image classification rows: pixel_values from the model's image processor, and the label id."""

    def __init__(self, rows: list[MediaRow], processor, label2id: dict[str, int]):
        self.rows, self.processor, self.label2id = rows, processor, label2id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        from danlu.data.media import read_image

        row = self.rows[i]
        pixels = self.processor(read_image(row.path), return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixels, "labels": self.label2id[row.target]}

    @property
    def label_rows(self) -> list[dict]:
        """The label ids alone (the majority baseline reads these, without decoding images)."""
        return [{"labels": self.label2id[r.target]} for r in self.rows]


def collate_images(rows: list[dict]) -> dict:
    import torch

    return {"pixel_values": torch.stack([r["pixel_values"] for r in rows]),
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long)}
