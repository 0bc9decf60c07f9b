"""danlu methods [--model M]: every fine-tuning method, what it trains, and its cost on a model."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("methods", help="List the fine-tuning methods (with trainable parameters on --model).")(methods)


def methods(
    model: str = typer.Option(None, "--model", "-m", help="Count trainable parameters on this model (e.g. builtin:small)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    import json
    import logging

    from danlu.methods.table import methods_table

    logging.getLogger("transformers").setLevel(logging.ERROR)
    rows = methods_table(model)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"danlu methods{f' on {model}' if model else ''}")
    cols = ["method", "trains", *(["trainable", "%"] if model else []), "merge", "inference cost", "memory"]
    for c in cols:
        table.add_column(c, justify="right" if c in ("trainable", "%") else "left")
    for r in rows:
        name = r["method"] + (f" ({r['is']})" if r["is"] else "")
        counts = []
        if model:
            counts = ([f"{r['trainable_params']:,}", f"{r['trainable_percent']:.3f}"] if "trainable_params" in r
                      else [r.get("error", "-"), "-"])
        merge = "yes" if r["can_merge"] else ("n/a (saves the model)" if r["artefact"] == "model" else "no")
        table.add_row(name, r["trains"], *counts, merge, r["inference_cost"], r["memory_class"])
    Console().print(table)  # the terminal's width (80 when piped; COLUMNS overrides); cells wrap
    Console().print("Vision-language models (builtin:tiny-vl, Qwen2-VL, LLaVA ...): every method also takes "
                    "method.freeze_vision_tower and method.freeze_projector (default true: the image side stays "
                    "frozen; LoRA's all-linear adapts the language model only).", markup=False)  # wraps
