"""Method tests train tiny models: one torch thread is as fast for matmuls this small, and it
does not spin against the other processes of a shared 2-core machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
