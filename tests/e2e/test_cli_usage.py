"""The CLI's own answers to usage mistakes (issue 19 item 1): whatever click the installed typer
uses (click itself or typer's vendored copy), a usage error is one paragraph on stderr with exit 2
and no traceback, `danlu --version` prints the version, and `danlu` alone prints help with exit 0."""

from __future__ import annotations

import pytest

import danlu
from tests.conftest import run_cli


@pytest.mark.parametrize(("args", "needle"), [
    (["trian", "x.yaml"], "No such command 'trian'"),
    (["train"], "Missing argument"),
    (["export", "runs/x", "--merg"], "--merg"),
])
def test_usage_error_exits_2_with_one_paragraph(args, needle):
    proc = run_cli(*args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    err = proc.stderr.strip()
    assert needle in err and err.startswith("error:")
    assert "\n\n" not in err and len(err.splitlines()) <= 3, err
    assert "-h' for usage" in err


def test_version_prints_version():
    proc = run_cli("--version", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"danlu {danlu.__version__}"


def test_no_arguments_prints_help_exit_0():
    proc = run_cli(timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "train" in proc.stdout and "export" in proc.stdout
