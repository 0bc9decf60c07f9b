"""`danlu data decontam`: drop training rows that share a long n-gram with an evaluation or
benchmark file, so the scores measured on those files mean something.

Text is split into tokens — words for alphabetic scripts, single characters for Chinese,
Japanese and Korean — after NFKC and case folding (rowtext.tokens). A training row is dropped
when any of its n-grams (13 tokens by default, as in GPT-3's contamination study) occurs in an
evaluation file. Evaluation fields shorter than that (short questions such as 怎么重置密码？) are
matched by their `min_ngram`-grams (8 tokens) if they have that many.

N-grams are hashed with a polynomial hash whose prefix sums give every window of every length
in three numpy operations (see `window_hashes`); evaluation hashes are kept sorted in numpy
arrays and looked up with searchsorted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from danlu.workbench.rowtext import iter_strings, tokens
from danlu.workbench.rowio import (
    AtomicRowWriter,
    Summary,
    check_output,
    default_output,
    iter_good_rows,
    write_json_atomic,
)
from danlu.errors import UserError

_P = 0x100000001B3  # odd, so invertible modulo 2^64
_P_INV = pow(_P, -1, 1 << 64)
MAX_LISTED = 1000  # report entries kept; the count is always complete
BATCH = 256  # training rows hashed and looked up together


@dataclass
class DecontamOptions:
    ngram: int = 13
    min_ngram: int = 8  # shorter eval fields (min_ngram..ngram-1 tokens) match by min_ngram-grams; 0: ignored
    fields: tuple[str, ...] = ()  # training fields to check (default: all content)


class _Powers:
    """P^j and P^-j modulo 2^64 for j < n, grown on demand."""

    def __init__(self) -> None:
        self.fwd = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.fwd) < n:
            size = max(n, 2 * len(self.fwd))
            # [1, x, x², ...]: uint64 products wrap around, which is exactly mod 2^64
            self.fwd, self.inv = (np.cumprod(np.r_[np.uint64(1), np.full(size - 1, x, dtype=np.uint64)],
                                             dtype=np.uint64) for x in (_P, _P_INV))
        return self.fwd[:n], self.inv[:n]


_POWERS = _Powers()


def token_ids(toks: list[str]) -> np.ndarray:
    # Python's str hash: stable within this process, which is all one decontam run needs
    return np.fromiter(map(hash, toks), dtype=np.int64, count=len(toks)).view(np.uint64)


def prefix_sums(ids: np.ndarray) -> np.ndarray:
    """S[0] = 0, S[k+1] = Σ_{j≤k} t[j]·P^-j (mod 2^64): every window's hash follows from two of them."""
    _, inv = _POWERS.upto(len(ids))
    return np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(ids * inv, dtype=np.uint64)])


def window_hashes(ids: np.ndarray, length: int, sums: np.ndarray | None = None) -> np.ndarray:
    """Hash of every window of `length` tokens: G_i = Σ_{j<L} t[i+j]·P^(L-1-j) mod 2^64,
    computed as P^(i+L-1)·(S[i+L] - S[i]) from the prefix sums."""
    m = len(ids)
    if m < length:
        return np.zeros(0, dtype=np.uint64)
    fwd, _ = _POWERS.upto(m)
    s = prefix_sums(ids) if sums is None else sums
    return fwd[length - 1:m] * (s[length:m + 1] - s[:m - length + 1])


class EvalIndex:
    """N-gram hashes of the evaluation files (windows of every length used, in one sorted array;
    64-bit hashes of different lengths practically never collide) and the row each came from."""

    def __init__(self, opts: DecontamOptions):
        self.opts = opts
        self._parts: list[tuple[np.ndarray, int]] = []
        self.lengths: set[int] = set()
        self.wheres: list[str] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.row_of = np.zeros(0, dtype=np.int64)

    def add_row(self, row: dict, where: str) -> None:
        rid = len(self.wheres)
        self.wheres.append(where)
        for text in iter_strings(row):
            ids = token_ids(tokens(text))
            if len(ids) >= self.opts.ngram:
                length = self.opts.ngram
            elif self.opts.min_ngram and len(ids) >= self.opts.min_ngram:
                length = self.opts.min_ngram  # a short field: its min_ngram-grams (2 lengths in all, not 6)
            else:
                continue
            self.lengths.add(length)
            self._parts.append((window_hashes(ids, length), rid))

    def freeze(self) -> None:
        if self._parts:
            h = np.concatenate([p for p, _ in self._parts])
            r = np.concatenate([np.full(len(p), rid, dtype=np.int64) for p, rid in self._parts])
            order = np.argsort(h)
            self.hashes, self.row_of = h[order], r[order]
        self._parts = []
        self.sorted_lengths = sorted(self.lengths)

    @property
    def rows(self) -> int:
        return len(self.wheres)

    @property
    def n_grams(self) -> int:
        return len(self.hashes)

    def first_hits(self, texts: list[list[str]]) -> list[tuple[int, int, int] | None]:
        """For each token list: (eval row id, start token, length) of a window found in the index,
        or None. One batch of texts is hashed and looked up in a few numpy calls: the prefix sums
        run over the texts end to end, and windows that cross from one text into the next are
        left out."""
        out: list[tuple[int, int, int] | None] = [None] * len(texts)
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        if not len(self.hashes) or not lens.sum():
            return out
        ids = token_ids([t for toks in texts for t in toks])
        sums = prefix_sums(ids)
        ends = np.cumsum(lens)
        owner = np.repeat(np.arange(len(texts)), lens)
        for length in self.sorted_lengths:
            win = window_hashes(ids, length, sums)  # window i covers tokens i .. i+length-1
            pos = np.searchsorted(self.hashes, win)
            pos[pos == len(self.hashes)] = 0
            hit = np.flatnonzero(self.hashes[pos] == win)
            hit = hit[hit + length <= ends[owner[hit]]]
            for h in hit.tolist():
                t = owner[h]
                if out[t] is None:
                    out[t] = (int(self.row_of[pos[h]]), h - int(ends[t] - lens[t]), length)
        return out


def build_index(evals: list[str], opts: DecontamOptions, on_bad_row: str) -> EvalIndex:
    if not evals:
        raise UserError("no evaluation files given", where="--against", hint="pass --against EVAL.jsonl (repeatable)")
    if opts.ngram < 2 or opts.min_ngram < 0:
        raise UserError("ngram must be ≥ 2 and min_ngram ≥ 0", where="--ngram/--min-ngram")
    index = EvalIndex(opts)
    for source in evals:
        for raw in iter_good_rows(source, on_bad_row):
            index.add_row(raw.data, raw.where)
    index.freeze()
    return index


def decontam_data(source: str, evals: list[str], output: str | None = None, opts: DecontamOptions | None = None, *,
                  report: str | None = None, on_bad_row: str = "error") -> Summary:
    """Write the rows of `source` that share no n-gram with `evals` to `output`
    (default SOURCE.decontam.jsonl); with `report`, a JSON list of the dropped rows and why."""
    opts = opts or DecontamOptions()
    out = check_output(output or default_output(source, "decontam"), [source, *evals])
    summary = Summary("decontam", inputs=[source, *evals], outputs=[str(out)] + ([report] if report else []))
    index = build_index(evals, opts, on_bad_row)
    summary.counts.update({"eval rows": index.rows, "eval n-grams": index.n_grams})
    fields = tuple(opts.fields) or None
    listed: list[dict] = []
    with AtomicRowWriter(out) as writer:
        for batch in _batches(iter_good_rows(source, on_bad_row, summary), BATCH):
            texts = [[tokens(t) for t in iter_strings(raw.data, fields)] for raw in batch]
            hits = index.first_hits([toks for row in texts for toks in row])
            k = 0
            for raw, row in zip(batch, texts):
                summary.rows_in += 1
                found = next(((h, toks) for h, toks in zip(hits[k:k + len(row)], row) if h), None)
                k += len(row)
                if found is None:
                    writer.write(raw.data)
                    summary.rows_out += 1
                    continue
                summary.drop("contaminated")
                if report and len(listed) < MAX_LISTED:
                    (rid, start, length), toks = found
                    listed.append({"where": raw.where, "eval": index.wheres[rid],
                                   "ngram": " ".join(toks[start:start + length])})
    if report:
        write_json_atomic(report, {"dropped": summary.dropped.get("contaminated", 0), "rows": listed,
                             "ngram": opts.ngram, "min_ngram": opts.min_ngram})
    return summary.done()


def _batches(rows, size: int):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
