"""`danlu` entry point: registers the command groups and maps errors to exit codes
(0 success, 2 bad input with file:line or config key, 1 anything else)."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="danlu",
    help="丹炉 danlu — fine-tune a small open model for your own domain: data → plan → train → eval → export → serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# module name → how it attaches (each module defines `register(app)`)
COMMAND_MODULES = ["train", "chat", "data", "methods"]
OPTIONAL_MODULES = ["eval", "export", "serve", "plan", "merge", "bench", "ui", "synth", "interop"]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"danlu.cli.{name}").register(app)
    for name in OPTIONAL_MODULES:
        try:
            mod = importlib.import_module(f"danlu.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"danlu.cli.{name}":
                continue
            raise
        mod.register(app)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (they are also off when stderr "
                               "is not a terminal; DANLU_PROGRESS=1 forces them)."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
):
    import danlu
    from danlu.log import setup_logging

    if version:
        typer.echo(f"danlu {danlu.__version__}")
        raise typer.Exit(0)
    setup_logging(verbose)
    from danlu.progress import set_quiet

    set_quiet(quiet)


def main(argv: list[str] | None = None) -> None:
    from danlu.errors import DanluError

    _register_all()
    try:
        app(args=argv, standalone_mode=False)
    except DanluError as exc:
        label = "error" if exc.exit_code == 2 else "danlu"
        typer.secho(f"{label}: {exc}", err=True, fg=typer.colors.RED if exc.exit_code == 2 else None)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors → exit 2 with click's message
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(0)
