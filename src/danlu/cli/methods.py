"""danlu methods [--model M]: every fine-tuning method, what it trains, and its cost on a model."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("methods", help="List the fine-tuning methods (with trainable parameters on --model).")(methods)


def methods(
    model: str = typer.Option(None, "--model", "-m", help="Count trainable parameters on this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    import json

    from danlu.methods.table import methods_table

    rows = methods_table(model)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"danlu methods{f' on {model}' if model else ''}")
    cols = ["method", "aliases", "trains", "trainable", "percent", "merge", "inference cost", "memory"]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(r["method"], ", ".join(r["aliases"]), r["trains"],
                      f"{r['trainable_params']:,}" if r.get("trainable_params") is not None else r.get("error", "-"),
                      f"{r['trainable_percent']:.4f}%" if r.get("trainable_percent") is not None else "-",
                      "yes" if r["can_merge"] else "no", r["inference_cost"], r["memory_class"])
    Console().print(table)
