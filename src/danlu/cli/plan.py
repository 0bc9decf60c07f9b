"""danlu plan [CONFIG.yaml] [key=value ...] [--gpu NAME | --vram GB] [--gpus N] [--json]
danlu sweep CONFIG.yaml --trials N [--metric eval_loss]"""

from __future__ import annotations

import json

import typer

from danlu.plan.terms import GiB


def register(app: typer.Typer) -> None:
    app.command("plan", help="Predict peak memory, time and cost of a run, and the settings that fit a GPU.")(plan)
    app.command("sweep", help="Search hyper-parameters with Optuna (TPE + ASHA/median pruning), resumable.")(sweep)


def plan(
    config: str = typer.Argument(None, help="The run's YAML config (optional with --model)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides: train.max_length=2048 method.r=32"),
    model: str = typer.Option(None, "--model", "-m", help="Hub id, local directory or builtin:*."),
    method: str = typer.Option(None, "--method", help="full, lora, qlora, dora ... (default: the config's, else lora)."),
    stage: str = typer.Option(None, "--stage", help="sft, dpo, ... (default: the config's, else sft)."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per sample (train.max_length)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Micro-batch per device."),
    grad_accum: int = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
    rank: int = typer.Option(None, "--rank", "-r", help="LoRA rank."),
    gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    optimizer: str = typer.Option(None, "--optimizer", help="adamw, adamw_8bit, paged_adamw_8bit, sgd."),
    precision: str = typer.Option(None, "--precision", help="fp32, bf16, fp16 (default auto)."),
    data: str = typer.Option(None, "--data", help="Training data file (tokens are counted with the tokenizer)."),
    tokens: int = typer.Option(None, "--tokens", help="Training tokens per epoch, when no data is given."),
    epochs: float = typer.Option(None, "--epochs", help="Passes over the data."),
    gpu: str = typer.Option(None, "--gpu", help="GPU to plan for: rtx4090, l4, a10g, a100-40gb, a100-80gb, h100, h200 ..."),
    vram: float = typer.Option(None, "--vram", help="Plan for a GPU with this many GB of memory."),
    gpus: int = typer.Option(1, "--gpus", help="Number of GPUs (the budget for recommendations)."),
    strategy: str = typer.Option("ddp", "--strategy", help="ddp, fsdp, zero1, zero2, zero3 (with --gpus N)."),
    offload: str = typer.Option("none", "--offload", help="none, optimizer, all (DeepSpeed ZeRO offload to CPU)."),
    recommend: bool = typer.Option(True, "--recommend/--no-recommend", help="Recommend settings for the GPU budget."),
    prices: str = typer.Option(None, "--prices", help="Your own price table (YAML rows like prices.yaml)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (peak_bytes at the top level)."),
    list_models: bool = typer.Option(False, "--list-models", help="List the bundled model shapes and exit."),
    list_gpus: bool = typer.Option(False, "--list-gpus", help="List the known GPUs and prices and exit."),
):
    from danlu.plan.hardware import load_prices

    if list_models or list_gpus:
        return _lists(list_models, prices)
    from danlu.plan.inputs import build_config, device_from_flags, has_data, spec_for
    from danlu.plan.report import make_plan

    flags = dict(model=model, method=method, stage=stage, max_length=max_length, batch_size=batch_size,
                 grad_accum=grad_accum, rank=rank, gradient_checkpointing=gradient_checkpointing,
                 optimizer=optimizer, precision=precision, data=data, epochs=epochs)
    cfg = build_config(config, overrides or [], flags)
    device = device_from_flags(gpu, vram)
    spec = spec_for(cfg, device, gpus=gpus, strategy=strategy, offload=offload)
    counted = None
    if has_data(cfg):
        from danlu.plan.tokens import count_tokens

        counted = count_tokens(cfg)
    elif tokens:
        spec.dataset_tokens = tokens
    result = make_plan(spec, device, load_prices(prices), data=counted, advise=recommend)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    _print_plan(result)


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f} GiB" if n >= 0.01 * GiB else f"{n / 2**20:,.1f} MiB"


def _print_plan(p) -> None:
    from rich.console import Console
    from rich.table import Table

    con, s, m = Console(), p.spec, p.memory
    con.print(f"[bold]{s.arch.name or s.arch.model_type}[/] — {s.arch.describe()}  ({s.arch.source})")
    con.print(f"{s.method_name} × {s.stage}: {s.shape.trainable:,} trainable params; micro-batch {s.batch_size} × "
              f"{s.max_length} tokens, grad_accum {s.grad_accum}, checkpointing {'on' if s.gradient_checkpointing else 'off'}, "
              f"{s.optimizer}, {s.precision}" + (f", {s.gpus} GPUs ({s.strategy})" if s.gpus > 1 else ""))
    table = Table(title=f"peak memory on {p.device.label or p.device.name}")
    for col in ("term", "size", "how"):
        table.add_column(col)
    for t in m.terms:
        if t.bytes or "CPU memory" in t.detail:
            table.add_row(t.key, _gib(t.bytes), t.detail)
    measure = "process RSS" if p.device.kind == "cpu" else "max allocated"
    table.add_row("[bold]peak[/]", f"[bold]{_gib(m.peak_bytes)}[/]", f"{measure}, at {m.peak_phase}")
    con.print(table)
    need = m.device_need_bytes
    verdict = "[green]fits[/]" if p.fits else "[red]does not fit[/]"
    con.print(f"{verdict}: needs {_gib(need)} of {_gib(p.device.memory_bytes)}"
              + (" (peak + CUDA context + fragmentation)" if p.device.kind == "cuda" else ""))
    if m.host_bytes:
        con.print(f"CPU memory for offloaded states and activations: {_gib(m.host_bytes)}")
    for note in m.notes + p.time.notes:
        con.print(f"  note: {note}")
    _print_time(con, p)
    if p.recommendation is not None:
        _print_recommendation(con, p.recommendation)


def _print_time(con, p) -> None:
    t = p.time
    if p.data is not None:
        d = p.data
        con.print(f"data: {d.samples:,} samples, {d.tokens:,} tokens" + ("" if d.counted else f" (estimated: {d.note})"))
    con.print(f"throughput: {t.tokens_per_s:,.0f} tokens/s ({t.flops_per_token / 1e9:,.2f} GFLOP per token: "
              f"{t.flops_detail}; {t.efficiency:.0%} of {t.peak_flops / 1e12:,.1f} TFLOPS)")
    if t.hours is None:
        return
    con.print(f"time: {t.hours:,.2f} h for {t.tokens_total:,} tokens")
    if t.costs:
        from rich.table import Table

        table = Table(title="cost per run (on-demand)")
        for col in ("provider", "$/GPU-h", "GPUs", "cost", "as of"):
            table.add_column(col)
        for c in t.costs:
            table.add_row(c["provider"], f"{c['usd_per_gpu_hour']:.2f}", str(c["gpus"]), f"${c['usd']:,.2f}", c["as_of"])
        con.print(table)


def _print_recommendation(con, rec) -> None:
    from rich.table import Table

    table = Table(title=f"recommended for {rec.gpus_budget} × {rec.device.label or rec.device.name}")
    for col in ("setting", "value", "why"):
        table.add_column(col)
    for setting, value, why in rec.reasons:
        table.add_row(setting, value, why)
    con.print(table)


def _lists(models: bool, prices_path: str | None) -> None:
    from danlu.plan.arch import bundled_names, resolve_arch
    from danlu.plan.hardware import GPUS, gpu, load_prices

    if models:
        for name in bundled_names():
            typer.echo(f"{name:45s} {resolve_arch(name).n_params / 1e9:7.2f}B")
        return
    prices = load_prices(prices_path)
    for key in GPUS:
        d = gpu(key)
        rows = [p for p in prices if p.gpu == key]
        cheapest = min(rows, key=lambda p: p.usd_per_hour) if rows else None
        price = f"from ${cheapest.usd_per_hour:.2f}/h ({cheapest.provider}, {cheapest.as_of})" if cheapest else "no price"
        typer.echo(f"{key:10s} {d.label:38s} {d.memory_bytes / GiB:6.1f} GiB  {d.bf16_tflops:6.1f} TFLOPS bf16  {price}")


def sweep(
    config: str = typer.Argument(..., help="The run's YAML config (every trial starts from it)."),
    trials: int = typer.Option(..., "--trials", "-n", help="Number of trials (finished ones count on resume)."),
    metric: str = typer.Option("eval_loss", "--metric", help="Metric to minimise (reported at each evaluation)."),
    space: str = typer.Option(None, "--space", help="YAML search space: {train.learning_rate: {low, high, log}, method.r: [8, 16]}."),
    pruner: str = typer.Option("asha", "--pruner", help="asha (successive halving), median, or none."),
    out: str = typer.Option(None, "--out", help="Sweep directory (default: <output_dir>-sweep)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the TPE sampler."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    from danlu.tune.sweep import run_sweep

    result = run_sweep(config, trials=trials, metric=metric, space_file=space, pruner=pruner, out=out, seed=seed)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"danlu sweep: {metric} (lower is better)")
    keys = sorted({k for r in result.rows for k in r["params"]})
    for col in ("trial", "state", metric, "step", *keys):
        table.add_column(col)
    for r in result.rows:
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        best = " *" if r["number"] == result.best_number else ""
        table.add_row(f"{r['number']}{best}", r["state"], value, str(r.get("step") or "-"),
                      *[_fmt(r["params"].get(k)) for k in keys])
    Console().print(table)
    typer.echo(f"best: trial {result.best_number} ({metric} {result.best_value:.4f}); config → {result.best_config}")


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
