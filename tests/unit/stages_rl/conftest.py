"""One intra-op thread for these tests: builtin models gain nothing from a second, and on a shared
2-core machine two threads ran 10× slower than one (measured)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
