"""danlu train CONFIG.yaml [section.key=value ...] [--resume] [--overwrite] [--dry-run]"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        context_settings={"allow_extra_args": False},
        help="Fine-tune from one YAML config; overrides like train.learning_rate=1e-4 follow the file.",
    )(train)


def train(
    config: str = typer.Argument(..., help="The run's YAML config."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides: train.learning_rate=1e-4 method.r=32"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest complete checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an earlier run in output_dir first."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (data, parameters, steps) and stop."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
):
    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    cfg = load_config(config, overrides or [])
    result = run_training(cfg, resume=resume, overwrite=overwrite, dry_run=dry_run)
    if dry_run:
        if as_json:
            typer.echo(json.dumps(result.info, ensure_ascii=False, indent=2))
        else:
            _print_plan(result.info)
        return
    info = result.info
    skipped = f", {info['skipped_steps']} NaN/inf steps skipped" if info.get("skipped_steps") else ""
    typer.echo(f"done: {info['global_step']} steps in {info['train_runtime_s']:.1f}s{skipped} → {result.artefact}")


def _print_plan(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    plan = info["plan"]
    table = Table(title="danlu train --dry-run", show_header=False)
    for key, value in plan.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    for report in info["data"]:
        tokens = report.get("tokens", {})
        table.add_row(f"{report['split']} rows read / kept / dropped",
                      f"{report['rows_read']} / {report['kept']} / {report['dropped']}")
        if tokens.get("count"):
            table.add_row(f"{report['split']} tokens min / median / p90 / max",
                          f"{tokens['min']} / {tokens['median']} / {tokens['p90']} / {tokens['max']}")
        for reason, entry in report["dropped_by_reason"].items():
            table.add_row(f"  dropped: {reason}", f"{entry['count']} (first: {entry['rows'][0]['where']})")
    Console(stderr=False).print(table)
