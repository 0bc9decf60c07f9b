"""danlu train CONFIG.yaml [section.key=value ...] [--resume] [--overwrite] [--dry-run] [--strict-memory]"""

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
    strict_memory: bool = typer.Option(False, "--strict-memory",
                                       help="Stop (exit 2) when the predicted peak memory exceeds the device's."),
    nproc: int = typer.Option(None, "--nproc", help="Processes on this node (one per GPU); starts them via torchrun."),
    nnodes: int = typer.Option(1, "--nnodes", help="Nodes in the job (run the same command on each)."),
    node_rank: int = typer.Option(0, "--node-rank", help="This node's index, 0 .. nnodes-1."),
    master_addr: str = typer.Option(None, "--master-addr", help="Address of node 0 (several nodes)."),
    master_port: int = typer.Option(None, "--master-port", help="Port on node 0 (default 29500 for several nodes)."),
):
    from danlu.config.load import load_config
    from danlu.train import distributed

    cfg = load_config(config, overrides or [])
    wants_launch = nproc is not None or nnodes > 1 or cfg.train.distributed != "none"
    if wants_launch and not distributed.launched() and not dry_run:
        from danlu.train import launch

        distributed.check(cfg)
        distributed.check_hardware(cfg)
        spec = launch.LaunchSpec(nproc or launch.default_nproc(), nnodes, node_rank, master_addr, master_port)
        flags = [f for f, on in (("--resume", resume), ("--overwrite", overwrite),
                                  ("--strict-memory", strict_memory)) if on]
        code = launch.run(spec, ["train", config, *(overrides or []), *flags])
        if code != 0:
            from danlu.errors import DanluError

            raise DanluError(f"a training process failed (torchrun exit status {code}); its message is above. "
                             "Continue from the last complete checkpoint with: danlu train "
                             f"{config} --resume --nproc {spec.nproc}")
        return
    from danlu.train.runner import rank, run_training

    result = run_training(cfg, resume=resume, overwrite=overwrite, dry_run=dry_run, strict_memory=strict_memory)
    if rank() != 0:
        return
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
