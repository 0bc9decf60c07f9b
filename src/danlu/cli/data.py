"""danlu data <command>: render (what the trainer sees) and the data workbench."""

from __future__ import annotations

import json

import typer

data_app = typer.Typer(help="Look at and fix training data: render, inspect, validate, clean, dedup ...",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("render")
def render(
    target: str = typer.Argument(..., help="A run config (.yaml) or a data file."),
    overrides: list[str] = typer.Argument(None, help="Config overrides (with a .yaml target)."),
    model: str = typer.Option(None, "--model", "-m", help="Tokenizer/template to use (default: the config's, or builtin:tiny)."),
    limit: int = typer.Option(3, "--limit", "-n", help="How many samples."),
    as_json: bool = typer.Option(False, "--json", help='One line per sample: {"input_ids": [...], "labels": [...]}.'),
):
    """Show exactly what the trainer will see, trained spans highlighted."""
    from danlu.data.render import render_samples, spans

    samples, tok = render_samples(target, model, limit, overrides)
    if as_json:
        for s in samples:
            typer.echo(json.dumps({"input_ids": s.encoded.input_ids, "labels": s.encoded.labels}))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    console.print("[dim]legend:[/dim] [black on green]trained (has labels)[/black on green]  [dim]not trained[/dim]")
    for s in samples:
        enc = s.encoded
        console.rule(f"{s.where} — {len(enc)} tokens, {enc.num_labels} trained")
        text = Text()
        for trained, ids in spans(enc):
            piece = tok.decode(ids, skip_special_tokens=False)
            text.append(piece, style="black on green" if trained else "dim")
        console.print(text)
