"""Tables for the data workbench: the summary every command ends with, and inspect's report."""

from __future__ import annotations

import json

import typer


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # long paths and file:line stay on one line


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def print_summary(summary, as_json: bool = False) -> None:
    """rows in → changed / dropped per rule → rows out, other counts, time and rows/s."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    console = _console()
    name = summary.command if summary.command.startswith("synth") else f"data {summary.command}"
    console.print(f"[bold]danlu {name}[/bold]: {', '.join(summary.inputs)}"
                  + (f" → {', '.join(summary.outputs)}" if summary.outputs else ""))
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("rows read", _n(summary.rows_in))
    for rule, n in summary.changed.items():
        table.add_row(f"  rows changed: {rule}", _n(n))
    for rule, n in summary.dropped.items():
        table.add_row(f"  dropped: {rule}" if summary.command != "validate" else f"  problem: {rule}", _n(n))
    table.add_row("rows written" if summary.command != "validate" else "rows without problems", _n(summary.rows_out))
    for key, value in summary.counts.items():
        table.add_row(key, _n(value))
    table.add_row("time", f"{summary.seconds:.2f} s · {summary.rows_per_s:,.0f} rows/s")
    console.print(table)


def _stats_row(name: str, stats: dict) -> list[str]:
    if not stats.get("count"):
        return [name, "-", "-", "-", "-", "-", "-"]
    return [name] + [_n(stats[k]) for k in ("min", "mean", "median", "p90", "p99", "max")]


def print_inspect(report) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{report.source}[/bold]: format [bold]{report.format}[/bold], "
                  f"{report.rows:,} rows ({report.good_rows:,} readable)")
    if report.fields:
        console.print("fields: " + ", ".join(f"{k} ({_n(v)})" for k, v in report.fields.items()))
    if report.roles:
        console.print("roles: " + ", ".join(f"{k} ({_n(v)})" for k, v in report.roles.items())
                      + (f"; messages per sample: median {report.turns['median']}, max {report.turns['max']}"
                         if report.turns.get("count") else ""))
    table = Table(show_header=True, title="length per sample", title_justify="left")
    for col in ("", "min", "mean", "median", "p90", "p99", "max"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(*_stats_row("characters", report.chars))
    if report.tokenizer:
        sampled = f", {report.tokens.get('count', 0):,} rows at random" if report.token_sample else ""
        table.add_row(*_stats_row(f"tokens ({report.tokenizer}{sampled})", report.tokens))
    console.print(table)
    if report.histogram:
        peak = max(c for _, _, c in report.histogram) or 1
        console.print("[bold]tokens per sample[/bold]")
        for lo, hi, c in report.histogram:
            console.print(f"  {lo:>7,}–{hi:<7,} {'█' * round(30 * c / peak):<30} {c:,}")
    if report.plot:
        console.print(f"histogram saved to {report.plot}")
    for i, ex in enumerate(report.examples, 1):
        console.rule(f"example {i}")
        console.print(ex, markup=False)
    if report.problems:
        console.rule("problems")
        for cat, e in report.problems.items():
            console.print(f"  {cat}: {e['count']:,} (first at {e['first']}: {e['reason']})", markup=False)
        console.print("  `danlu data validate` lists every one.")
    else:
        console.print("no problems found")
