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
COMMAND_MODULES = ["train", "chat", "data", "methods", "models"]
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


def _print_version(value: bool) -> None:
    """Eager option callback: runs while the arguments are parsed, before any command is required."""
    if value:
        import danlu

        typer.echo(f"danlu {danlu.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (they are also off when stderr "
                               "is not a terminal; DANLU_PROGRESS=1 forces them)."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
):
    from danlu.log import setup_logging

    setup_logging(verbose)
    from danlu.progress import set_quiet

    set_quiet(quiet)


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-error classes, abort classes) of every click the installed typer may raise from:
    click itself (typer < 0.22) and the copy newer typer vendors as `typer._click`."""
    shown: list[type] = []
    aborts: list[type] = [typer.Abort]
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        shown.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    return tuple(shown), tuple(aborts)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def _show_click_error(exc: Exception) -> int:
    """Print a click error as one paragraph and return the exit code: the help text alone
    (`danlu` with no arguments) → 0, any usage error (unknown command/option, missing argument) → 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        typer.echo(exc.format_message())
        return 0
    ctx = getattr(exc, "ctx", None)
    hint = f" See '{ctx.command_path} -h' for usage." if ctx is not None else ""
    typer.secho(f"error: {_sentence(exc.format_message())}{hint}", err=True, fg=typer.colors.RED)
    return 2


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
        shown, aborts = _click_exceptions()
        if isinstance(exc, shown):
            sys.exit(_show_click_error(exc))
        if isinstance(exc, aborts):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise
    sys.exit(0)
