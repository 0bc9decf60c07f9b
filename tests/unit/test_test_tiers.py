"""The test tiers are wired as promised: `make test` / `make test-fast` leave the real-weights tier out
(it takes minutes), `make test-real` runs exactly tests/real, every test there carries the `real`
marker, and CI (.ci/run) runs both tiers."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.M)
    assert match, f"no make target {target}"
    return match.group(1)


def test_normal_suite_leaves_real_tests_out_and_test_real_runs_them():
    for target in ("test", "test-fast"):
        assert "not real" in _recipe(target), target
    assert "-m real tests/real" in _recipe("test-real")


def test_every_real_test_module_is_marked_real():
    for path in sorted((ROOT / "tests" / "real").glob("test_*.py")):
        assert "pytest.mark.real" in path.read_text(encoding="utf-8"), path.name


def test_ci_runs_both_tiers_in_order():
    lines = [x.strip() for x in (ROOT / ".ci" / "run").read_text().splitlines() if x.startswith("make")]
    assert lines == ["make test", "make test-real"]
