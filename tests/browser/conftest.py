"""Browser tier: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's Python
package. Runs only when asked for (`make test-browser`, i.e. `pytest -m browser`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DANLU_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("DANLU_TEST_ARTEFACTS", Path(__file__).resolve().parents[2] / "test-artefacts")) / "browser"


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("markexpr") or ""
    asked = "browser" in expr and "not browser" not in expr
    why = None
    if not asked:
        why = "browser tests run with `make test-browser` (pytest -m browser)"
    elif not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        why = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            why = "Playwright's Python package is not installed (pip install playwright)"
    if why:
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
