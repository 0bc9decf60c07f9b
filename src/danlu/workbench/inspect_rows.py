"""`danlu data inspect`: what a data file holds — detected format, rows, fields, roles, length
in characters and in tokens (statistics and a histogram, optionally a PNG), a few examples,
and the problems found (counted per kind, first file:line of each).

Token lengths are those of the text the trainer sees: the conversation rendered with the
model's chat template, tokenised by its tokenizer (builtin:tiny unless a model is named)."""

from __future__ import annotations

import os
import random
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from danlu.chat.messages import Conversation, Labelled, Preference, Prompt, Text, Unpaired
from danlu.workbench.validate import Problem, iter_samples_and_problems

TOKENIZE_BATCH = 512
EXAMPLE_CHARS = 400


@dataclass
class InspectReport:
    source: str
    format: str = "unknown"
    rows: int = 0
    good_rows: int = 0
    fields: dict[str, int] = field(default_factory=dict)  # top-level field → rows that have it
    roles: dict[str, int] = field(default_factory=dict)  # role → messages
    turns: dict = field(default_factory=dict)  # statistics of messages per conversation
    chars: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    tokenizer: str | None = None
    token_sample: int = 0  # token lengths of this many rows sampled at random (0: of every row)
    histogram: list[tuple[int, int, int]] = field(default_factory=list)  # (from, to, samples) in tokens
    examples: list[str] = field(default_factory=list)
    problems: dict[str, dict] = field(default_factory=dict)  # category → {count, first, reason}
    plot: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def sample_messages(s) -> tuple[list[dict], object]:
    """(messages as the trainer renders them, tools) of any kind of sample."""
    if isinstance(s, Conversation):
        return s.messages, s.tools
    if isinstance(s, Preference):
        return s.prompt + s.chosen, s.tools
    if isinstance(s, Unpaired):
        return s.prompt + s.completion, None
    if isinstance(s, Prompt):
        return s.prompt, None
    return [], None


def sample_text(s) -> str:
    """A short human-readable view of a sample."""
    if isinstance(s, Text):
        return s.text
    if isinstance(s, Labelled):
        return f"[{s.label}] {s.text}" + (f" ⟂ {s.text_pair}" if s.text_pair else "")
    msgs, _ = sample_messages(s)
    lines = [f"{m['role']}: {m.get('content') or m.get('tool_calls')}" for m in msgs]
    if isinstance(s, Preference):
        lines.append(f"rejected: {s.rejected[0].get('content')}")
    return "\n".join(lines)


class _TokenCounter:
    """Token lengths of rendered samples, tokenised in batches; of every sample, or of a seeded
    uniform sample of `limit` of them (reservoir sampling: one pass, `limit` samples held)."""

    def __init__(self, model: str, limit: int = 0):
        from danlu.chat.templates import resolve_template
        from danlu.models.load import load_tokenizer

        self.tok = load_tokenizer(model)
        self.tpl = resolve_template(self.tok)
        self.limit, self.seen, self.reservoir = limit, 0, []
        self.rng = random.Random(0)
        self.pending: list[str] = []
        self.lengths = array("I")  # 4 bytes a row

    def add(self, s) -> None:
        self.seen += 1
        if not self.limit:
            self._render(s)
        elif len(self.reservoir) < self.limit:
            self.reservoir.append(s)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.limit:
                self.reservoir[j] = s

    def finish(self) -> array:
        for s in self.reservoir:
            self._render(s)
        self.reservoir = []
        self.flush()
        return self.lengths

    def _render(self, s) -> None:
        if isinstance(s, Text):
            text = s.text
        elif isinstance(s, Labelled):
            text = s.text + (s.text_pair or "")
        else:
            msgs, tools = sample_messages(s)
            text = self.tpl.render(msgs, tools=tools, add_generation_prompt=isinstance(s, Prompt))
        self.pending.append(text)
        if len(self.pending) >= TOKENIZE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            ids = self.tok(self.pending, add_special_tokens=False)["input_ids"]
            self.lengths.extend(len(x) for x in ids)
            self.pending = []


def length_stats(lengths: array) -> dict:
    """count, total, min, mean, median, p90, p99, max (as data_report.json's token statistics)."""
    if not lengths:
        return {"count": 0}
    s = np.sort(np.frombuffer(lengths, dtype=np.uint32))
    n = len(s)

    def pct(q: float) -> int:
        return int(s[min(n - 1, int(q * n))])

    return {"count": n, "total": int(s.sum(dtype=np.int64)), "min": int(s[0]), "max": int(s[-1]),
            "mean": round(float(s.mean()), 1), "median": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)}


def histogram(lengths, bins: int = 10) -> list[tuple[int, int, int]]:
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    edges = np.unique(np.linspace(lo, hi + 1, bins + 1).round().astype(int))
    counts, _ = np.histogram(lengths, bins=edges)
    return [(int(a), int(b) - 1, int(c)) for a, b, c in zip(edges[:-1], edges[1:], counts)]


def save_plot(lengths: list[int], stats: dict, path: str, title: str) -> None:
    """A PNG histogram of token lengths with the median, p90 and p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#c0562f")
    for key, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
        ax.axvline(stats[key], color="black", linestyle=style, linewidth=1, label=f"{key} {stats[key]}")
    ax.set_xlabel("tokens per sample")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _record_problem(report: InspectReport, p: Problem) -> None:
    entry = report.problems.setdefault(p.category, {"count": 0, "first": p.where, "reason": p.reason})
    entry["count"] += 1


def inspect_data(source: str, *, fmt: str = "auto", model: str | None = "builtin:tiny", plot: str | None = None,
                 examples: int = 2, token_sample: int = 0) -> InspectReport:
    """Look at every row of `source`; token lengths with `model`'s tokenizer and chat template
    (None: characters only) of every row or of `token_sample` rows drawn at random; with `plot`,
    a PNG histogram of token lengths."""
    t0 = time.perf_counter()
    report = InspectReport(source, tokenizer=model, token_sample=token_sample)
    counter = _TokenCounter(model, token_sample) if model else None
    fields: Counter = Counter()
    roles: Counter = Counter()
    turns, chars = array("I"), array("I")  # 4 bytes a row: a 1 GB file's millions of rows stay small
    state: dict = {}
    for item in iter_samples_and_problems(source, fmt, state):
        report.rows += 1
        if isinstance(item, Problem):
            _record_problem(report, item)
            fields.update(item.data.keys() if item.data else ())
            continue
        raw, sample = item
        report.good_rows += 1
        fields.update(raw.data.keys())
        msgs, _ = sample_messages(sample)
        if msgs:
            roles.update(m["role"] for m in msgs)
            turns.append(len(msgs))
        text = sample_text(sample)
        chars.append(len(text))
        if len(report.examples) < examples:
            report.examples.append(text[:EXAMPLE_CHARS] + ("…" if len(text) > EXAMPLE_CHARS else ""))
        if counter:
            counter.add(sample)
    report.format = state.get("format", fmt)
    report.fields, report.roles = dict(fields.most_common()), dict(roles.most_common())
    report.turns, report.chars = length_stats(turns), length_stats(chars)
    if counter:
        lengths = counter.finish()
        report.tokens = length_stats(lengths)
        report.histogram = histogram(lengths)
        if plot and lengths:
            save_plot(lengths, report.tokens, plot, f"{Path(source).name} — {model} tokens")
            report.plot = plot
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
