"""danlu bench CONFIG: the seed recipe and danlu side by side on your hardware."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("bench", help="Run the seed recipe (transformers+peft+trl) and danlu side by side; report the ratios.")(
        bench)


def bench(
    config: str = typer.Argument(..., help="A LoRA/QLoRA run config (model, data, method, train)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. train.max_steps=30"),
    out: str = typer.Option("runs/bench", "--out", "-o", help="Working folder for both runs."),
    results: str = typer.Option("bench/results", "--results", help="Folder for <date>-<hardware>.json."),
    seed_precision: str = typer.Option(
        "as-written", "--seed-precision",
        help="as-written: TRL's defaults (bf16 autocast, gradient checkpointing); fp32: autocast off, "
             "the fair side on a CPU without native bf16."),
    remeasure_peak: bool = typer.Option(
        False, "--remeasure-peak",
        help="Measure this machine's matmul peak again (MFU's denominator) and overwrite the cached figure."),
):
    from rich.console import Console
    from rich.table import Table

    from danlu.bench.runner import run_bench
    from danlu.config.load import load_config

    cfg = load_config(config, overrides or [])
    _warn_emulated_bf16(seed_precision)
    res = run_bench(cfg, Path(out), results_dir=Path(results), seed_precision=seed_precision,
                    name=Path(config).stem, remeasure_peak=remeasure_peak)
    table = Table(title=f"danlu bench — {res['hardware']}")
    for col in ("", "seed recipe", "danlu", "danlu / seed"):
        table.add_column(col)

    a, b, r = res["seed_recipe"], res["danlu"], res["ratios"]
    table.add_row("loss tokens / s", fmt(a["tokens_per_s"]), fmt(b["tokens_per_s"]), fmt(r["tokens_per_s"], "x"))
    table.add_row("peak memory (GiB)", fmt(a["peak_memory_bytes"] / 2**30), fmt(b["peak_memory_bytes"] / 2**30),
                  fmt(r["peak_memory"], "x"))
    table.add_row("final loss", fmt(a["final_loss"]), fmt(b["final_loss"]), fmt(r["final_loss"], "x"))
    table.add_row("MFU", percent(a["mfu"]), percent(b["mfu"]), "")
    table.add_row("precision", str(a["precision"]), str(b["precision"]), "")
    table.add_row("gradient checkpointing", str(a["gradient_checkpointing"]), str(b["gradient_checkpointing"]), "")
    Console().print(table)
    typer.echo(peak_line(res["peak_flops"]))
    if res.get("written_to"):
        typer.echo(f"written to {res['written_to']}")


def peak_line(peak: dict) -> str:
    """Which peak MFU divides by, and where it came from."""
    from danlu.bench.peak import mfu_peak

    flops, dtype = mfu_peak(peak)
    where = {"cache": f"cached in {peak.get('cache_file')} ({peak.get('measured_at')}); --remeasure-peak to redo",
             "measured now": f"cached in {peak.get('cache_file')}; --remeasure-peak to redo"}.get(peak.get("source"), "")
    busy = peak.get("load_at_measure") or 0
    warn = (f" (measured with {busy:g} runnable processes per core: the peak reads low and MFU high; "
            "--remeasure-peak on a quiet machine)") if busy > 1 else ""
    return (f"MFU against a {dtype} peak of {flops / 1e9:,.0f} GFLOP/s — {peak['method']}{warn}"
            + (f"; {where}" if where else ""))


def fmt(v, unit: str = "") -> str:
    """A figure with the digits that matter: 1 decimal from 100 up, else 4 significant digits
    (a loss of 0.0123 or a ratio of 0.98 must not print as 0.0 or 1.0)."""
    if v is None:
        return "-"
    if not isinstance(v, float):
        return f"{v:,}{unit}"
    return f"{v:,.1f}{unit}" if abs(v) >= 100 else f"{v:.4g}{unit}"


def percent(v) -> str:
    """MFU 0.0166 → 1.66%."""
    return "-" if v is None else f"{100 * v:.3g}%"


def _warn_emulated_bf16(seed_precision: str) -> None:
    import torch

    from danlu.models.load import cpu_has_native_bf16

    if seed_precision == "as-written" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        typer.echo("warning: this CPU has no native bf16 (AMX / AVX512-BF16); the seed recipe's TRL default bf16 "
                   "autocast runs emulated and very slowly here. --seed-precision fp32 is the fair comparison.",
                   err=True)
