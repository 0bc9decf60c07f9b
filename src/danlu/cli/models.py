"""danlu models: the models danlu names itself (builtin:*, pkg:*), and whether each is installed."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("models", help="List the builtin and packaged (pkg:*) models: params, architecture, template, installed.")(models)


def models(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
           prepare: list[str] = typer.Option(None, "--prepare", metavar="pkg:NAME",
                                             help="Dequantise a packaged model's GGUF into danlu's cache now (once; "
                                                  "`make setup` does it for the demo's model) and print its folder.")):
    import json

    from danlu.models.catalog import model_rows

    if prepare:
        from danlu.models.packaged import packaged_path

        for name in prepare:
            typer.echo(f"{name}: {packaged_path(name)}")
        return

    rows = model_rows()
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="danlu models (also: any Hugging Face folder or hub id, or a .gguf file)")
    for col in ("name", "params", "architecture", "template", "installed", "note"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        table.add_row(r["name"], r["params"], r["architecture"], r["template"],
                      "yes" if r["installed"] else "no", r["note"])
    Console(width=200).print(table)
