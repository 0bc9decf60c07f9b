"""The memory check `danlu train` runs first: a warning when the predicted peak exceeds the
device, a UserError (exit 2) with --strict-memory, nothing when it fits or the shape is unknown."""

from __future__ import annotations

import logging

import pytest

from danlu.config.load import load_config_dict
from danlu.errors import UserError
from danlu.plan import hardware, preflight
from danlu.plan.hardware import Device


def _cfg(model: str = "Qwen/Qwen2.5-7B", method: str = "full"):
    return load_config_dict({"model": {"name_or_path": model}, "data": {"train": "x.jsonl"},
                             "method": {"name": method}, "train": {"max_length": 2048, "batch_size": 4}})


@pytest.fixture
def gpu_24gb(monkeypatch):
    dev = Device("rtx4090", "cuda", 24 * 1024**3, 165.0, 82.0, "RTX 4090")
    monkeypatch.setattr(hardware, "this_machine", lambda: dev)
    return dev


def test_over_memory_warns(gpu_24gb, caplog):
    with caplog.at_level(logging.WARNING, logger=preflight.__name__):
        est = preflight.check_memory(_cfg(), strict=False)
    assert est is not None and est.device_need_bytes > gpu_24gb.memory_bytes
    assert any("exceeds" in r.getMessage() and "RTX 4090" in r.getMessage() for r in caplog.records)


def test_over_memory_strict_stops(gpu_24gb):
    with pytest.raises(UserError) as err:
        preflight.check_memory(_cfg(), strict=True)
    assert "predicted peak memory" in str(err.value) and "danlu plan" in str(err.value)


def test_fits_quietly(gpu_24gb, caplog):
    with caplog.at_level(logging.WARNING, logger=preflight.__name__):
        est = preflight.check_memory(_cfg("Qwen/Qwen2.5-0.5B", "qlora"), strict=True)
    assert est.device_need_bytes < gpu_24gb.memory_bytes and not caplog.records


def test_unknown_shape_skips(gpu_24gb):
    assert preflight.check_memory(_cfg("nobody/unknown-model"), strict=True) is None
