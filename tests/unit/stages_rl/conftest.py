"""One intra-op thread for these tests: builtin models gain nothing from a second, and on a shared
2-core machine two threads ran 10× slower than one (measured)."""

from __future__ import annotations

import pytest

from tests.conftest import one_torch_thread


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
