"""danlu import-config LF.yaml -o danlu.yaml: a LLaMA-Factory training config → a danlu config."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("import-config", help="Convert a LLaMA-Factory training YAML into a danlu config; "
                                      "keys with no equivalent are listed, never silently dropped.")(import_config)


def import_config(
    source: str = typer.Argument(..., help="LLaMA-Factory config (.yaml or .json), "
                                           "e.g. examples/train_lora/llama3_lora_sft.yaml"),
    output: str = typer.Option(None, "--output", "-o", help="Write the danlu config here (default: print it)."),
):
    from danlu.config.load import load_config
    from danlu.errors import ConfigError
    from danlu.interop.llamafactory.config import convert_file, to_yaml

    conv = convert_file(source)
    text = to_yaml(conv, source)
    if not output:
        typer.echo(text)
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}: {len(conv.mapped)} keys mapped, {len(conv.not_needed)} not needed, "
                   f"{len(conv.dropped)} with no danlu equivalent")
    for item in conv.dropped:
        typer.secho(f"  not carried over: {item}", err=True, fg=typer.colors.YELLOW)
    if output:
        try:
            load_config(output)
        except ConfigError as exc:
            raise ConfigError(f"{output} was written but does not validate yet:\n{exc}",
                              hint=f"edit {output}, then: danlu train {output}") from None
        typer.echo(f"next: danlu train {output}")
