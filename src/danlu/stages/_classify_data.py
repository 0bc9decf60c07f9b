"""Classification data and metrics: labelled rows → token ids and label ids, the label set read
from the training data (or given in classify.labels), accuracy and macro-F1."""

from __future__ import annotations

from collections import Counter

from danlu.data.dataset import iter_samples, split_eval
from danlu.data.encode import SampleDropped
from danlu.data.formats import FormatOptions
from danlu.data.report import DataReport
from danlu.errors import DataError

IGNORE = -100


def format_options(ctx, opts) -> FormatOptions:
    base = ctx.format_options()
    columns = {"text": opts.text_column, "label": opts.label_column}
    if opts.level == "token":
        columns = {k: v for k, v in columns.items() if v not in ("text", "label")}  # token rows: tokens / tags
    if opts.text_pair_column:
        columns["text_pair"] = opts.text_pair_column
    return FormatOptions(system=base.system, placeholders=base.placeholders, columns=columns)


def read_samples(ctx, opts, sources, split: str) -> tuple[list, DataReport]:
    data_cfg = ctx.config.data
    kind = "token_labelled" if opts.level == "token" else "labelled"
    fmt = data_cfg.format if data_cfg.format != "auto" else kind  # renamed columns defeat auto-detection
    report = DataReport(split=split)
    samples = list(iter_samples(sources, fmt=fmt, kinds=(kind,), opts=format_options(ctx, opts),
                                on_bad_row=data_cfg.on_bad_row, report=report))
    if split == "train" and data_cfg.max_samples:
        samples = samples[: data_cfg.max_samples]
    return samples, report


def sample_labels(sample) -> list:
    return list(sample.tags) if hasattr(sample, "tags") else [sample.label]


def label_set(samples, given: list[str] | None) -> list[str]:
    """Label names in id order: as given, or every label of the training data (ids ascending when
    the labels are integer ids, else names sorted)."""
    if given:
        return [str(x) for x in given]
    seen = {x for s in samples for x in sample_labels(s)}
    if all(isinstance(x, int) for x in seen):
        return [str(i) for i in sorted(seen)]
    return sorted(str(x) for x in seen)


def encode(sample, tok, label2id: dict[str, int], max_length: int, overlong: str) -> dict:
    """Token ids, attention mask (and token types) plus `labels`: one id, or one per token with
    the label on each word's first sub-token and -100 elsewhere."""
    for x in sample_labels(sample):
        if str(x) not in label2id:
            raise SampleDropped(f"label {x!r} is not in the label set ({', '.join(list(label2id)[:8])} ...)")
    if hasattr(sample, "tags"):
        enc = tok(sample.words, is_split_into_words=True)
        words = enc.word_ids()
        labels, prev = [], None
        for w in words:
            labels.append(IGNORE if w is None or w == prev else label2id[str(sample.tags[w])])
            prev = w
        enc = dict(enc)
        enc["labels"] = labels
    else:
        enc = dict(tok(sample.text, sample.text_pair) if sample.text_pair else tok(sample.text))
        enc["labels"] = label2id[str(sample.label)]
    n = len(enc["input_ids"])
    if n > max_length:
        if overlong == "drop":
            raise SampleDropped(f"over-long: {n} tokens > train.max_length {max_length}")
        if overlong == "error":
            raise DataError(f"sample has {n} tokens, more than train.max_length {max_length}", where=sample.where,
                            hint="raise train.max_length, or set data.overlong: truncate | drop")
        enc = {k: (v[:max_length] if isinstance(v, list) else v) for k, v in enc.items()}
    return enc


def encode_split(ctx, samples, report: DataReport, label2id: dict[str, int]) -> list[dict]:
    cfg = ctx.config
    rows = []
    for sample in samples:
        try:
            rows.append(encode(sample, ctx.tokenizer, label2id, cfg.train.max_length, cfg.data.overlong))
        except SampleDropped as exc:
            report.drop(sample.where, str(exc))
    report.kept = len(rows)
    report.lengths = [len(r["input_ids"]) for r in rows]
    ctx.reports.append(report)
    report.log_summary()
    if not rows:
        raise DataError(f"no usable {report.split} samples in {report.sources}", where=f"data.{report.split}",
                        hint="see data_report.json for why each row was dropped")
    return rows


def label_ids(labels: list[str], hint: str) -> dict[str, int]:
    """label name → class id; a DataError at data.train when the training data has fewer than 2 labels."""
    if len(labels) < 2:
        raise DataError(f"classification needs at least 2 labels; the training data has {labels}",
                        where="data.train", hint=hint)
    return {name: i for i, name in enumerate(labels)}


def build_classify_datasets(ctx, opts):
    """(train rows, eval rows or None, label names)."""
    data_cfg = ctx.config.data
    train_samples, train_report = read_samples(ctx, opts, data_cfg.train, "train")
    labels = label_set(train_samples, opts.labels)
    label2id = label_ids(labels, hint="check classify.label_column")
    train = encode_split(ctx, train_samples, train_report, label2id)
    held = None
    if data_cfg.eval:
        eval_samples, eval_report = read_samples(ctx, opts, data_cfg.eval, "eval")
        held = encode_split(ctx, eval_samples, eval_report, label2id)
    elif data_cfg.eval_split > 0:
        seed = data_cfg.shuffle_seed if data_cfg.shuffle_seed is not None else ctx.config.train.seed
        train, held = split_eval(train, data_cfg.eval_split, seed)
    return train, held or None, labels


def flat_labels(rows: list[dict]) -> list[int]:
    out = []
    for r in rows:
        out += [x for x in r["labels"] if x != IGNORE] if isinstance(r["labels"], list) else [r["labels"]]
    return out


def accuracy_and_f1(preds, labels) -> dict:
    """Accuracy and macro-F1 over the classes that occur in the labels or the predictions."""
    pairs = [(int(p), int(t)) for p, t in zip(preds, labels) if int(t) != IGNORE]
    if not pairs:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    correct = sum(p == t for p, t in pairs)
    f1s = []
    for c in sorted({x for pair in pairs for x in pair}):
        tp = sum(p == c and t == c for p, t in pairs)
        fp = sum(p == c and t != c for p, t in pairs)
        fn = sum(p != c and t == c for p, t in pairs)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": round(correct / len(pairs), 4), "macro_f1": round(sum(f1s) / len(f1s), 4)}


def majority_baseline(train_rows: list[dict], eval_rows: list[dict]) -> float:
    """Accuracy on eval of always answering the most frequent training label."""
    top = Counter(flat_labels(train_rows)).most_common(1)[0][0]
    held = flat_labels(eval_rows)
    return round(sum(x == top for x in held) / max(len(held), 1), 4)
