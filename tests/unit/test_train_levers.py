"""Training levers: the frozen base's storage dtype, freed heap pages handed back to the OS,
loss-token counting without a host sync."""

from __future__ import annotations

import psutil
import pytest
import torch

from danlu.config.load import load_config_dict
from danlu.models.load import storage_dtype
from danlu.train.memory import release_free_heap, release_memory_callback, trim_available


@pytest.mark.parametrize("requested, trains_base, precision, quantized, cuda, expected", [
    ("auto", False, "bf16", False, False, torch.bfloat16),  # CPU with AMX / AVX512-BF16: half the bytes
    ("auto", False, "fp32", False, False, torch.float32),  # CPU without native bf16
    ("auto", True, "bf16", False, False, torch.float32),  # full / freeze / bitfit: fp32 master weights
    ("auto", False, "bf16", True, False, torch.float32),  # QLoRA: unquantised parts stay fp32 on CPU
    ("float32", False, "bf16", False, False, torch.float32),  # the user's choice wins
    ("auto", False, "fp32", False, True, torch.bfloat16),  # GPU with bf16
])
def test_storage_dtype(monkeypatch, requested, trains_base, precision, quantized, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert storage_dtype(requested, trains_base=trains_base, precision=precision, quantized=quantized) == expected


def _cfg(**train):
    return load_config_dict({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"}, "method": {"name": "lora"},
                             "train": train, "output_dir": "runs/x"})


@pytest.mark.skipif(not trim_available(), reason="needs glibc's malloc_trim")
def test_release_memory_is_on_for_cpu_runs_and_can_be_turned_off():
    assert release_memory_callback(_cfg()) is not None
    assert release_memory_callback(_cfg(release_memory=False)) is None


def test_heap_is_trimmed_every_few_steps_not_every_step(monkeypatch):
    """Issue 24: trimming after every step re-faulted the freed pages on every step (~20% of a CPU
    bench step); every TRIM_EVERY-th step keeps the peak RSS and most of the speed."""
    from types import SimpleNamespace

    from danlu.train import memory

    calls = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: calls.append(1) or True)
    cb = memory.ReleaseMemory()
    for step in range(1, 13):
        cb.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert memory.TRIM_EVERY > 1 and len(calls) == 12 // memory.TRIM_EVERY


@pytest.mark.skipif(not trim_available(), reason="needs glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_os():
    rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
    # 1 MiB blocks come from the heap (below glibc's mmap threshold once it has grown); keeping every
    # 8th one alive pins the pages between them when the rest are freed
    keep, blocks = [], [torch.ones(256 * 1024) for _ in range(800)]
    keep = blocks[::8]
    del blocks
    before = rss()
    assert release_free_heap()
    after = rss()
    assert len(keep) == 100 and before - after > 200 * 2**20, (before, after)


def test_loss_tokens_are_counted_without_a_sync_and_read_once():
    from danlu.train.trainer import DanluTrainerMixin

    t = DanluTrainerMixin.__new__(DanluTrainerMixin)  # the counter only; no Trainer needed
    t.count_loss_tokens(torch.tensor(5))
    t.count_loss_tokens(torch.tensor(7))
    t.count_loss_tokens(3)
    assert t._tokens_dev is not None and t._tokens_host == 3  # tensors stay tensors until read
    assert t.loss_tokens == 15 and t._tokens_dev is None
    t.loss_tokens = 100  # a resumed run sets the count
    t.count_loss_tokens(torch.tensor(1))
    assert t.loss_tokens == 101
