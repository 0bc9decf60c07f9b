"""`danlu data dedup`: drop exact duplicates (equal after normalisation: NFKC, case, spaces and
punctuation ignored) and near duplicates (MinHash LSH over character n-grams, estimated
Jaccard similarity at or above a threshold), keeping the first row of each cluster.

Two passes over the input: the first computes fingerprints (see minhash.py), the second writes
the rows that head their cluster. Memory does not grow with row length, only by a few dozen
bytes per row; `--report` lists every cluster with what was kept and what was dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from danlu.workbench.minhash import FingerprintStore, MinHashParams, agreement, find_clusters
from danlu.workbench.rowtext import content_text, match_key
from danlu.workbench.rowio import (
    AtomicRowWriter,
    Summary,
    check_output,
    default_output,
    iter_good_rows,
    write_json_atomic,
)
from danlu.errors import UserError

PREVIEW_CHARS = 120


@dataclass
class DedupOptions:
    threshold: float = 0.8  # estimated Jaccard similarity of character n-gram sets
    ngram: int = 3  # characters per shingle; 3 separates near from distinct in Chinese and English alike
    num_perm: int = 128
    near: bool = True  # False: exact duplicates only
    fields: tuple[str, ...] = ()  # compare only these top-level fields (default: all content)
    seed: int = 1
    tmp_dir: str | None = None  # where signatures wait (default: the system temp folder)

    def params(self) -> MinHashParams | None:
        if not self.near:
            return None
        if not 0.0 < self.threshold <= 1.0:
            raise UserError(f"threshold must be in (0, 1], got {self.threshold}", where="--threshold")
        if self.ngram < 1 or self.num_perm < 16:
            raise UserError("ngram must be ≥ 1 and num_perm ≥ 16", where="--ngram/--num-perm")
        return MinHashParams(self.threshold, self.num_perm, self.ngram, self.seed)


@dataclass
class Clusters:
    """root[i] = index of the first row of row i's cluster; exact[i] = its normalised hash."""

    root: np.ndarray
    exact: np.ndarray
    sigs: object = None  # signatures (minhash.SignatureFile), for the report's similarities
    sizes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sizes = np.bincount(self.root, minlength=len(self.root)) if len(self.root) else np.zeros(0, np.int64)

    @property
    def n_clusters(self) -> int:
        return int((self.root == np.arange(len(self.root))).sum())


def fingerprint_pass(source: str, store: FingerprintStore, opts: DedupOptions, on_bad_row: str, summary: Summary,
                     on_row: Callable[[int, dict], None] | None = None) -> Clusters:
    """Pass 1: fingerprints of every row of `source`, then its clusters."""
    fields = tuple(opts.fields) or None
    n = 0
    for raw in iter_good_rows(source, on_bad_row, summary):
        store.add(match_key(content_text(raw.data, fields)))
        if on_row is not None:
            on_row(n, raw.data)
        n += 1
    summary.rows_in += n  # (+ the unreadable rows iter_good_rows counted)
    fp = store.finish()
    return Clusters(find_clusters(fp), fp.exact, fp.sigs)


def dedup_data(source: str, output: str | None = None, opts: DedupOptions | None = None, *,
               report: str | None = None, on_bad_row: str = "error") -> Summary:
    """Write the rows of `source` that head their duplicate cluster to `output`
    (default SOURCE.dedup.jsonl); with `report`, a JSON file listing every cluster."""
    opts = opts or DedupOptions()
    out = check_output(output or default_output(source, "dedup"), [source])
    if report:
        check_output(report, [source, str(out)], suffixes=(".json",))
    summary = Summary("dedup", inputs=[source], outputs=[str(out)] + ([report] if report else []))
    params = opts.params()
    with FingerprintStore(params, opts.tmp_dir) as store:
        cl = fingerprint_pass(source, store, opts, on_bad_row, summary)
        members: dict[int, dict] = {}
        with AtomicRowWriter(out) as writer:
            for i, raw in enumerate(iter_good_rows(source, on_bad_row)):
                root = cl.root[i]
                if root == i:
                    writer.write(raw.data)
                    summary.rows_out += 1
                else:
                    summary.drop("exact" if cl.exact[i] == cl.exact[root] else "near")
                if report and cl.sizes[root] > 1:
                    members[i] = {"where": raw.where, "text": content_text(raw.data)[:PREVIEW_CHARS]}
        summary.counts["clusters with duplicates"] = int((cl.sizes > 1).sum())
        if params:
            summary.counts["threshold"] = params.threshold
        if report:
            write_cluster_report(report, cl, members, params)
    return summary.done()


def write_cluster_report(path: str, cl: Clusters, members: dict[int, dict], params: MinHashParams | None) -> None:
    """{"params": ..., "clusters": [{"kept": {where, text}, "dropped": [{where, text, kind, similarity}]}]}."""
    idx = np.array(sorted(members), dtype=np.int64)
    roots = cl.root[idx]
    sim = agreement(cl.sigs, idx, roots) if cl.sigs is not None and len(idx) else np.ones(len(idx))
    clusters: dict[int, dict] = {}
    for i, root, s in zip(idx.tolist(), roots.tolist(), sim.tolist()):
        if i == root:
            clusters.setdefault(root, {"dropped": []})["kept"] = members[i]
            continue
        kind = "exact" if cl.exact[i] == cl.exact[root] else "near"
        entry = {**members[i], "kind": kind, "similarity": 1.0 if kind == "exact" else round(s, 3)}
        clusters.setdefault(root, {"dropped": []})["dropped"].append(entry)
    doc = {"params": params.__dict__ if params else {"exact_only": True},
           "clusters": [{"kept": c["kept"], "dropped": c["dropped"]} for _, c in sorted(clusters.items())]}
    write_json_atomic(path, doc)
