"""Method tests train tiny models: one torch thread is as fast for matmuls this small, and it
does not spin against the other processes of a shared 2-core machine."""

from __future__ import annotations

import pytest

from tests.conftest import one_torch_thread


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
