"""`danlu data split`: train / val / test files by ratio, seeded, optionally stratified by a
field, with duplicate and near-duplicate rows always in the same split.

Rows are first grouped into clusters exactly as `dedup` groups them (a row alone is a cluster
of one). Whole clusters are then dealt out: within each stratum (the value of `stratify`, or
one stratum) the clusters are shuffled with the seed and the test and validation quotas are
filled first, the rest going to train. Quotas come from the ratios with largest-remainder
rounding, so the split sizes add up to the row count and every stratum gets its share."""

from __future__ import annotations

from array import array
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from danlu.errors import UserError
from danlu.workbench.dedup import DedupOptions, fingerprint_pass
from danlu.workbench.minhash import FingerprintStore
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output, iter_good_rows

SPLITS = ("train", "val", "test")


@dataclass
class SplitOptions:
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test
    seed: int = 42
    stratify: str | None = None  # a top-level field whose values keep their proportions in each split
    group_near: bool = True  # near duplicates stay together (False: only exact duplicates)
    dedup: DedupOptions = field(default_factory=DedupOptions)

    def check(self) -> None:
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or not 0.999 <= sum(self.ratios) <= 1.001:
            raise UserError(f"ratios must be three non-negative numbers adding up to 1, got {list(self.ratios)}",
                            where="--ratios", hint="for example --ratios 0.8,0.1,0.1")


def quotas(sizes: np.ndarray, ratio: float) -> np.ndarray:
    """Rows each stratum gives to a split of `ratio`: floors, then the rows left over from the
    whole-dataset total go to the strata with the largest remainders."""
    exact = sizes * ratio
    q = np.floor(exact).astype(np.int64)
    left = int(round(sizes.sum() * ratio)) - int(q.sum())
    if left > 0:
        q[np.argsort(-(exact - q), kind="stable")[:left]] += 1
    return q


def assign(root: np.ndarray, strata: np.ndarray, opts: SplitOptions) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of every row; all rows of a cluster get its head's."""
    n = len(root)
    heads = np.flatnonzero(root == np.arange(n))
    size = np.bincount(root, minlength=n)[heads]
    head_stratum = strata[heads]
    n_strata = int(strata.max()) + 1 if n else 0
    stratum_rows = np.bincount(head_stratum, weights=size, minlength=n_strata).astype(np.int64)
    want = {k: quotas(stratum_rows, opts.ratios[k]) for k in (2, 1)}  # test first: it is the scarcest
    rng = np.random.default_rng(opts.seed)
    split_of_head = np.zeros(len(heads), dtype=np.int8)
    for s in range(n_strata):
        members = rng.permutation(np.flatnonzero(head_stratum == s))
        filled = {2: 0, 1: 0}
        for h in members.tolist():
            for k in (2, 1):
                if filled[k] < want[k][s]:
                    split_of_head[h] = k
                    filled[k] += int(size[h])
                    break
    split = np.zeros(n, dtype=np.int8)
    split[heads] = split_of_head
    return split[root]


def split_data(source: str, output_dir: str | None = None, opts: SplitOptions | None = None, *,
               on_bad_row: str = "error") -> Summary:
    """Write OUTPUT_DIR/{train,val,test}.jsonl (default SOURCE.split/); splits of ratio 0 are not written."""
    opts = opts or SplitOptions()
    opts.check()
    out_dir = Path(output_dir or Path(source).with_name(f"{Path(source).stem}.split"))
    paths = {k: check_output(out_dir / f"{name}.jsonl", [source])
             for k, name in enumerate(SPLITS) if k == 0 or opts.ratios[k] > 0}
    summary = Summary("split", inputs=[source], outputs=[str(p) for p in paths.values()])
    values: dict = {}
    strata = array("i")  # stratum code per row, 4 bytes

    def on_row(i: int, row: dict) -> None:
        if opts.stratify:
            value = row.get(opts.stratify)
            key = value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)
            strata.append(values.setdefault(key, len(values)))

    dedup_opts = DedupOptions(**{**opts.dedup.__dict__, "near": opts.group_near})
    with FingerprintStore(dedup_opts.params(), dedup_opts.tmp_dir) as store:
        cl = fingerprint_pass(source, store, dedup_opts, on_bad_row, summary, on_row)
    if summary.rows_in == 0:
        raise UserError("no rows to split", where=source)
    codes = np.frombuffer(strata, dtype=np.int32) if opts.stratify else np.zeros(summary.rows_in, dtype=np.int32)
    split = assign(cl.root, codes.astype(np.int64), opts)
    with ExitStack() as stack:  # every split file is renamed into place only if all were written
        writers = {k: stack.enter_context(AtomicRowWriter(p)) for k, p in paths.items()}
        for i, raw in enumerate(iter_good_rows(source, on_bad_row)):
            writers[int(split[i])].write(raw.data)
    summary.rows_out = sum(w.count for w in writers.values())
    summary.counts.update({f"{SPLITS[k]} rows": w.count for k, w in writers.items()})
    summary.counts["clusters kept whole"] = int((cl.sizes > 1).sum())
    if opts.stratify:
        summary.counts["strata"] = len(values)
    return summary.done()
