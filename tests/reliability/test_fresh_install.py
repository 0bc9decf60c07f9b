"""RELIABILITY case 19, a fresh install behaves as tested (issue 19 item 1): whatever click the
installed typer uses (click itself or typer's vendored copy), a usage error is one paragraph on
stderr with exit 2 and no traceback, `danlu --version` prints the version, and `danlu` alone
prints help with exit 0; every dependency has an upper bound and constraints.txt (what `make`
and `.ci/run` install with) pins the tested versions, all inside those ranges."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import danlu
from tests.conftest import run_cli

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


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


# --- reproducible installs: pyproject.toml ranges, constraints.txt the exact tested set ---

ROOT = Path(__file__).resolve().parents[2]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements() -> list[Requirement]:
    proj = _project()
    lines = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        lines += [line for line in extra if not line.startswith("danlu[")]
    return [Requirement(line) for line in lines]


def _pins() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9._-]+", name) and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), \
            f"constraints.txt:{n}: {line!r} is not a plain name==version resolvable from an index"
        pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_has_an_upper_bound():
    unbounded = [str(r) for r in _requirements()
                 if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)]
    assert not unbounded, f"pyproject.toml: no upper bound on {unbounded}"


def test_constraints_pin_the_tested_set_within_the_ranges():
    pins = _pins()
    assert "danlu" not in pins and pins.get("torch") == "2.13.0" and "typer" in pins
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
    assert {canonicalize_name(r.name) for r in _project_core()} <= pins.keys()


def test_installed_versions_are_the_pinned_ones():
    """This environment is the tested one: whatever constraints.txt pins and is installed here has
    exactly that version (after a deliberate upgrade: `make constraints`)."""
    wrong = {}
    for name, version in _pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if have.split("+")[0] != version:
            wrong[name] = f"{have} installed, {version} pinned"
    assert not wrong, wrong


def _project_core() -> list[Requirement]:
    return [Requirement(line) for line in _project()["dependencies"]]
