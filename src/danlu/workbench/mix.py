"""`danlu data mix`: several inputs into one file, by weights or by row counts, seeded.

Each input's rows are counted first; the rows to take from each are chosen with the seed
(without repetition while an input has enough rows; beyond that its rows repeat as whole
epochs plus a random remainder); then the inputs are read side by side and interleaved at
random, so no input's rows are held in memory. Inputs must share one format, or name one
with `to` and they are converted on the way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from danlu.chat.messages import RowError
from danlu.errors import DataError, UserError
from danlu.workbench.convert import detect, reader_for, writer_for
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output, iter_good_rows


@dataclass
class MixOptions:
    weights: tuple[float, ...] = ()  # share of the output per input
    counts: tuple[int, ...] = ()  # rows per input (instead of weights)
    total: int = 0  # output rows with weights (0: as many as the inputs give without repeating a row)
    seed: int = 42
    to: str | None = None  # convert every row to this layout (needed when inputs differ in format)


def count_rows(source: str, on_bad_row: str) -> tuple[int, str | None]:
    """(rows, detected format of the first row)."""
    n, fmt = 0, None
    for raw in iter_good_rows(source, on_bad_row):
        if n == 0:
            fmt = detect(raw.data)
        n += 1
    return n, fmt


def plan_counts(sizes: list[int], opts: MixOptions) -> list[int]:
    """Rows to take from each input."""
    if opts.counts:
        if len(opts.counts) != len(sizes) or any(c < 0 for c in opts.counts):
            raise UserError(f"give one non-negative count per input ({len(sizes)}), got {list(opts.counts)}",
                            where="--counts")
        return list(opts.counts)
    weights = np.asarray(opts.weights or [1.0] * len(sizes), dtype=float)
    if len(weights) != len(sizes) or (weights < 0).any() or weights.sum() <= 0:
        raise UserError(f"give one non-negative weight per input ({len(sizes)}), got {list(opts.weights)}",
                        where="--weights")
    weights = weights / weights.sum()
    total = opts.total
    if not total:  # the largest mix that repeats no row
        total = int(min(s / w for s, w in zip(sizes, weights) if w > 0))
    exact = weights * total
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[:total - counts.sum()]] += 1
    return counts.tolist()


def multiplicity(size: int, want: int, rng: np.random.Generator) -> np.ndarray:
    """How many times each of `size` rows is written so that `want` rows come out."""
    times = np.full(size, want // size, dtype=np.int32) if size else np.zeros(0, dtype=np.int32)
    rest = want - int(times.sum())
    if rest:
        times[rng.choice(size, rest, replace=False)] += 1
    return times


def _rows_of(source: str, times: np.ndarray, on_bad_row: str, convert):
    for i, raw in enumerate(iter_good_rows(source, on_bad_row)):
        for _ in range(int(times[i])):
            yield convert(raw)


def mix_data(sources: list[str], output: str, opts: MixOptions | None = None, *, on_bad_row: str = "error") -> Summary:
    opts = opts or MixOptions()
    if len(sources) < 2:
        raise UserError("mix needs at least two inputs")
    out = check_output(output, sources)
    summary = Summary("mix", inputs=list(sources), outputs=[str(out)])
    sizes, formats = zip(*(count_rows(s, on_bad_row) for s in sources))
    if opts.to is None and len(set(formats)) > 1:
        listed = ", ".join(f"{Path(s).name}: {f}" for s, f in zip(sources, formats))
        raise UserError(f"the inputs have different formats ({listed})", where="data mix",
                        hint="pass --to messages (or another layout) to convert them while mixing")
    for s, n in zip(sources, sizes):
        if n == 0:
            raise UserError("input has no rows", where=s)
    want = plan_counts(list(sizes), opts)
    rng = np.random.default_rng(opts.seed)
    times = [multiplicity(n, k, rng) for n, k in zip(sizes, want)]
    streams = [_rows_of(s, t, on_bad_row, _converter(opts.to, f)) for s, t, f in zip(sources, times, formats)]
    order = rng.permutation(np.repeat(np.arange(len(sources), dtype=np.int16), want))  # input of each output row
    with AtomicRowWriter(out) as w:
        for k in order.tolist():
            w.write(next(streams[k]))
    summary.rows_in = sum(sizes)
    summary.rows_out = w.count
    for s, n, k in zip(sources, sizes, want):
        summary.counts[f"{Path(s).name}"] = f"{k} of {n}" + (" (rows repeat)" if k > n else "")
    return summary.done()


def _converter(to: str | None, fmt: str | None):
    if to is None:
        return lambda raw: raw.data
    read, writer = reader_for(fmt or "auto"), writer_for(to)

    def convert(raw):
        try:
            return writer.row(read(raw.data))
        except RowError as exc:
            raise DataError(str(exc), where=raw.where, hint=f"this row cannot be written as {to}") from None

    return convert
