"""danlu eval RUN_DIR_OR_MODEL --data FILE [--compare BASE_MODEL_OR_RUN] [-o DIR]"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help="Measure a run (or any model) on your own questions, benchmarks and an LLM judge, against its base; "
             "writes samples.jsonl, metrics.json and report.html.",
    )(eval_cmd)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def eval_cmd(
    target: str = typer.Argument(..., help="Run directory, adapter/ or model/ folder, hub id, or builtin:*"),
    data: list[str] = typer.Option(None, "--data", "-d", help="Questions with reference answers (any chat format); repeatable."),
    compare: str = typer.Option(None, "--compare", "-c", help="Base model or run to compare with; 'base' = the run's own base model."),
    out_dir: str = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/eval)."),
    metrics: list[str] = typer.Option(None, "--metrics", "-m", help="Metrics to compute (comma-separated); default: all that apply."),
    fmt: str = typer.Option("auto", "--format", help="Data format (auto-detected by default)."),
    system: str = typer.Option(None, "--system", help="System prompt for rows that have none."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N rows (and N benchmark questions)."),
    schema: str = typer.Option(None, "--schema", help="JSON schema file for schema_match (default: the reference's own shape)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    dtype: str = typer.Option("auto", "--dtype", help="Weights and compute: auto (bf16 on a GPU, fp32 on a CPU), fp32, bf16 "
                              "(4x faster on CPUs with AMX / AVX512-BF16, the precision danlu trains in there) or fp16."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (default)."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling (temperature > 0)."),
    no_loss: bool = typer.Option(False, "--no-loss", help="Skip held-out loss and perplexity."),
    bench: list[str] = typer.Option(None, "--bench", help="Benchmark folder in MMLU / C-Eval / CMMLU layout; repeatable."),
    bench_split: str = typer.Option(None, "--bench-split", help="dev | val | test (default: test with answers, else val)."),
    shots: int = typer.Option(0, "--shots", min=0, help="Few-shot examples from the dev split."),
    mc_style: str = typer.Option("letter", "--mc-style", help="letter (log-prob of A/B/C/D) or text (of each option's text)."),
    mc_chat: bool = typer.Option(False, "--mc-chat", help="Wrap benchmark prompts in the chat template."),
    judge: bool = typer.Option(False, "--judge", help="Ask the LLM judge set in eval.judge (run config or --config)."),
    judge_config: str = typer.Option(None, "--config", help="YAML with eval.judge (default: the run's config.yaml)."),
    judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL of the judge (turns the judge on)."),
    judge_model: str = typer.Option(None, "--judge-model", help="Judge model name."),
    harness: list[str] = typer.Option(None, "--harness", help="lm-evaluation-harness tasks (comma-separated), if installed."),
    rank_by: str = typer.Option(None, "--rank-by", help="Per-sample metric that ranks wins and losses (default token_f1)."),
):
    from danlu.errors import UserError
    from danlu.eval.run import EvalOptions, run_eval

    if dtype not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"--dtype must be auto, fp32, bf16 or fp16, not {dtype!r}", where="--dtype")
    if mc_style not in ("letter", "text"):
        raise UserError(f"--mc-style must be letter or text, not {mc_style!r}", where="--mc-style")
    opts = EvalOptions(
        data=list(data or []), compare=compare, out_dir=out_dir, fmt=fmt, system=system, limit=limit,
        metrics=_split(metrics) or None, schema=schema, max_new_tokens=max_new_tokens, batch_size=batch_size,
        dtype=dtype,
        temperature=temperature, top_p=top_p, seed=seed, loss=not no_loss, bench=list(bench or []),
        bench_split=bench_split, shots=shots, mc_style=mc_style, mc_chat=mc_chat,
        judge=_judge(target, judge or bool(judge_url), judge_config, judge_url, judge_model),
        harness_tasks=_split(harness), rank_by=rank_by,
    )
    result = run_eval(target, opts)
    _print(result)


def _judge(target: str, wanted: bool, path: str | None, url: str | None, model: str | None):
    if not wanted:
        return None
    from danlu.eval.judge import judge_config_from
    from danlu.eval.run import run_dir_of

    if path is None:
        run = run_dir_of(target)
        path = str(run / "config.yaml") if run and (run / "config.yaml").is_file() else None
    cfg = judge_config_from(path, {"base_url": url, "model": model})
    if cfg is None:
        from danlu.errors import UserError

        raise UserError("--judge: no judge is configured", where="eval.judge",
                        hint="add eval.judge (base_url, model, rubric) to the run config or a --config file, "
                             "or give --judge-url and --judge-model")
    return cfg


def _print(result) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    base = s["metrics"]["base"]
    table = Table(title=f"danlu eval {s['model']}" + (f" vs {s['base']}" if s["base"] else ""))
    table.add_column("metric 指标")
    table.add_column("model", justify="right")
    if base is not None:
        table.add_column("base", justify="right")
        table.add_column("Δ", justify="right")
    for name, value in s["metrics"]["model"].items():
        label = s["labels"][name]
        zh = "" if label["label_zh"] == label["label"] else " " + label["label_zh"]
        row = [label["label"] + zh, _num(value, name)]
        if base is not None:
            d = s["metrics"]["delta"].get(name)
            row += [_num(base.get(name), name), ("+" if d and d > 0 else "") + _num(d, name)]
        table.add_row(*row)
    Console().print(table)
    typer.echo(f"report: {result.out_dir / 'report.html'}")


def _num(value, name: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if name == "loss" else f"{value:.2f}"
