"""danlu export RUN_DIR -o DIR [--merge] [--quantize int8|int4] [--gguf [--gguf-type f16|q8_0|q4_k_m|q5_k_m|q6_k]]"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command("export", help="Export a run for deployment: merged HF model, int8/int4, GGUF + Ollama Modelfile.")(
        export)


def export(
    target: str = typer.Argument(..., help="Run directory, or its adapter/ or model/ folder."),
    output: str = typer.Option(..., "--output", "-o", help="Folder to write (created; must be empty)."),
    merge: bool = typer.Option(False, "--merge", help="Fold the adapter into the base: a plain HF safetensors dir."),
    quantize: str = typer.Option(None, "--quantize", help="int8 | int4: bitsandbytes weight-only quantisation."),
    gguf: bool = typer.Option(False, "--gguf", help="Also write a GGUF file and an Ollama Modelfile."),
    gguf_type: str = typer.Option("f16", "--gguf-type", help="f16 | q8_0 | q4_k_m | q5_k_m | q6_k (the k-quants need danlu[llamacpp])"),
    dtype: str = typer.Option("auto", "--dtype", help="Merged weights on disk: auto (the base's) | float32 | "
                              "bfloat16 | float16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
):
    from danlu.export.run import ExportOptions, export_run

    opts = ExportOptions(merge=merge, quantize=quantize, gguf=gguf, gguf_type=gguf_type, dtype=dtype,
                         overwrite=overwrite)
    report = export_run(target, output, opts)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    _print(report)


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def _err(e: dict) -> str:
    if "max_rel" not in e:  # a full fine-tune: nothing was merged
        return e.get("note", "-")
    return f"max |Δlogit| {e['max_abs']:.2e} (rel {e['max_rel']:.1e}), top-1 agree {100 * e['top1_agree']:.1f}%"


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"danlu export → {report['output']}", show_header=True)
    table.add_column("artefact")
    table.add_column("size")
    table.add_column("check")
    if report.get("adapter_bytes"):
        table.add_row("adapter (source)", _mb(report["adapter_bytes"]), "")
    if "merge" in report:
        m = report["merge"]
        table.add_row(f"merged ({m['dtype']})", _mb(m["bytes"]),
                      f"merge: {_err(m['merge_error'])}; reload: {_err(m['reload_error'])}")
    if "quantize" in report:
        q = report["quantize"]
        table.add_row(f"{q['kind']} ({q['method']})", _mb(q["bytes"]), _err(q["logit_error_vs_unquantised"]))
    if "gguf" in report:
        g = report["gguf"]
        table.add_row(f"{g['file']} ({g['architecture']}, pre {g['tokenizer_pre']})", _mb(g["bytes"]),
                      _err(g["logit_error_dequantized"]))
    Console(stderr=False).print(table)
    if report.get("chain"):
        typer.echo(f"adapter chain: {report['base_model']} → {report['chain']}")
    typer.echo(f"template {report['template']!r}, turn end {report['turn_end']!r}, "
               f"stop ids {report['stop_token_ids']}: carried into every artefact (checked)")
