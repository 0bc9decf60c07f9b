"""`danlu data validate`: every problem in a data file with its file:line and the reason —
rows that do not parse, rows missing fields, wrong role order, empty answers, rows of another
format than the file's — the same checks `danlu train` applies, without dropping anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

from danlu.chat.messages import RowError
from danlu.data.readers import read_rows
from danlu.data.report import reason_category
from danlu.workbench.convert import detect, reader_for
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output


@dataclass
class Problem:
    where: str
    reason: str
    data: dict | None = None  # the row, when it parsed

    @property
    def category(self) -> str:
        return reason_category(self.reason)

    def to_dict(self) -> dict:
        return {"where": self.where, "category": self.category, "reason": self.reason}


def iter_samples_and_problems(source: str, fmt: str = "auto", state: dict | None = None) -> Iterator:
    """(raw row, sample) for good rows and Problem for bad ones, in file order. The file's format
    is `fmt` or the one detected on its first parseable row; `state['format']` records it."""
    state = state if state is not None else {}
    read = None if fmt == "auto" else reader_for(fmt)
    state["format"] = fmt
    for raw in read_rows(source):
        if raw.data is None:
            yield Problem(raw.where, raw.error or "unreadable row")
            continue
        if read is None:
            name = detect(raw.data)
            if name is None:
                yield Problem(raw.where, f"no known format has fields {sorted(raw.data)}", raw.data)
                continue
            state["format"], read = name, reader_for(name)
        try:
            sample = read(raw.data)
        except RowError as exc:
            own = detect(raw.data)
            hint = ""
            if own and own != state["format"]:
                hint = f" (the row looks like {own}, the file is {state['format']})"
            yield Problem(raw.where, f"{exc}{hint}", raw.data)
            continue
        yield raw, sample


def validate_data(source: str, output: str | None = None, *, fmt: str = "auto",
                  on_problem: Callable[[Problem], None] | None = None) -> Summary:
    """Check every row of `source`; each problem goes to `on_problem` and, with `output`, to a
    JSONL file of {where, category, reason}. The summary counts problems per category."""
    summary = Summary("validate", inputs=[source], outputs=[str(output)] if output else [])
    state: dict = {}
    with AtomicRowWriter(check_output(output, [source])) if output else nullcontext() as writer:
        for item in iter_samples_and_problems(source, fmt, state):
            summary.rows_in += 1
            if isinstance(item, Problem):
                summary.drop(item.category)
                if on_problem:
                    on_problem(item)
                if writer:
                    writer.write(item.to_dict())
            else:
                summary.rows_out += 1
    summary.counts["format"] = state.get("format", fmt)
    summary.counts["problems"] = sum(summary.dropped.values())
    return summary.done()
