"""Image classification data for `stage: classify` on an image model (ViT family): a folder per
class (data.train: photos/ with photos/cat/*.jpg, photos/dog/*.jpg …) or {image, label} rows,
checked at load (danlu.stages._media_data), labelled with the same label set rules as text."""

from __future__ import annotations

from danlu.data.media import read_image
from danlu.data.report import DataReport
from danlu.stages._classify_data import label_ids
from danlu.stages._media_data import ImageRows, finish_report, media_rows, split_rows


def image_label_set(rows, given: list[str] | None) -> list[str]:
    """As given, else every label of the training rows: ids ascending when all are integers,
    else names sorted (folder names for a folder per class)."""
    if given:
        return [str(x) for x in given]
    seen = {r.target for r in rows}
    if all(x.lstrip("-").isdigit() for x in seen):
        return sorted(seen, key=int)
    return sorted(seen)


def _read(ctx, opts, sources, split: str) -> tuple[list, DataReport]:
    report = DataReport(split=split)
    rows = media_rows(sources, media_col=opts.image_column, target_col=opts.label_column,
                      on_bad_row=ctx.config.data.on_bad_row, report=report,
                      check=lambda row: read_image(row.path), folders=True)
    if split == "train" and ctx.config.data.max_samples:
        rows = rows[: ctx.config.data.max_samples]
    return rows, report


def _known(rows, report: DataReport, label2id: dict[str, int]) -> list:
    kept = []
    for r in rows:
        if r.target in label2id:
            kept.append(r)
        else:
            report.drop(r.where, f"label {r.target!r} is not in the label set ({', '.join(list(label2id)[:8])} ...)")
    return kept


def build_image_datasets(ctx, opts):
    """(train ImageRows, eval ImageRows or None, label names)."""
    data_cfg = ctx.config.data
    train_rows, train_report = _read(ctx, opts, data_cfg.train, "train")
    labels = image_label_set(train_rows, opts.labels)
    label2id = label_ids(labels, hint="a folder per class, or check classify.label_column")
    train_rows = _known(train_rows, train_report, label2id)
    finish_report(ctx, train_report, len(train_rows))
    if data_cfg.eval:
        held_rows, eval_report = _read(ctx, opts, data_cfg.eval, "eval")
        held_rows = _known(held_rows, eval_report, label2id)
        finish_report(ctx, eval_report, len(held_rows))
    else:
        train_rows, held_rows = split_rows(ctx, train_rows)
    processor = ctx.tokenizer
    held = ImageRows(held_rows, processor, label2id) if held_rows else None
    return ImageRows(train_rows, processor, label2id), held, labels
