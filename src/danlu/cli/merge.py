"""danlu merge MODEL MODEL ... --method linear|task_arithmetic|ties|dare_linear|dare_ties --out DIR"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "merge",
        help="Combine fine-tuned models or adapters of one base: linear (model soup), task_arithmetic, "
        "ties, dare_linear, dare_ties. Inputs: run directories, artefacts, model directories, builtin:*.",
    )(merge)


def _floats(text: str | None, where: str) -> list[float] | None:
    from danlu.errors import UserError

    if not text:
        return None
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"{text!r} is not a comma-separated list of numbers", where=where,
                        hint="for example --weights 0.7,0.3") from None


def merge(
    models: list[str] = typer.Argument(..., help="Run directories, artefacts (adapter/ or model/), model dirs."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the merged model into."),
    method: str = typer.Option("linear", "--method", "-m",
                               help="linear | task_arithmetic | ties | dare_linear | dare_ties"),
    base: str = typer.Option(None, "--base", help="The base model (needed by all but linear; adapters name it)."),
    weights: str = typer.Option(None, "--weights", help="One weight per model, e.g. 0.7,0.3 (default: equal)."),
    density: float = typer.Option(0.5, "--density", help="ties / dare: fraction of each task vector kept."),
    lam: float = typer.Option(1.0, "--lambda", help="Scale of the merged task vector (not linear)."),
    seed: int = typer.Option(0, "--seed", help="dare: seed of the random drop masks."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (the first model's) | float32 | bfloat16 | float16"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    from danlu.errors import UserError
    from danlu.soup.run import MergeSpec, run_merge

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"unknown dtype {dtype!r}", where="--dtype", hint="auto, float32, bfloat16 or float16")
    spec = MergeSpec(models=list(models), method=method, base=base, weights=_floats(weights, "--weights"),
                     density=density, lam=lam, seed=seed, dtype=dtype)
    summary = run_merge(spec, out, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        typer.echo(f"merged {summary['models']} models ({summary['method']}, {summary['tensors']} tensors) → {summary['out']}")
