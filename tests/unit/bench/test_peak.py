"""MFU's denominator is stable: measured once per machine and cached under $DANLU_HOME (or the
vendor's spec sheet for a known GPU), named in the result; MFU prints with 3 significant digits."""

from __future__ import annotations

import json

import pytest

from danlu.bench import peak
from danlu.cli.bench import peak_line, percent


class FakeMeasure:
    def __init__(self, *values):
        self.values, self.calls = list(values), 0

    def __call__(self):
        self.calls += 1
        return {"device": "cpu", "fp32": 1e11, "bf16": self.values.pop(0), "method": "measured: fake"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DANLU_HOME", str(tmp_path))
    return tmp_path


def test_peak_is_measured_once_then_read_from_the_cache(home):
    m = FakeMeasure(5e11, 2e12)
    first = peak.peak_flops(measure=m)
    second = peak.peak_flops(measure=m)
    assert m.calls == 1 and first["source"] == "measured now" and second["source"] == "cache"
    assert second["bf16"] == first["bf16"] == 5e11 and second["method"] == "measured: fake"
    cached = json.loads((home / "peak" / f"{first['key']}.json").read_text())
    assert cached["bf16"] == 5e11 and "load_at_measure" in cached and cached["device_model"].startswith("cpu:") and "threads" in cached["device_model"]


def test_remeasure_overwrites_the_cache(home):
    m = FakeMeasure(5e11, 2e12)
    peak.peak_flops(measure=m)
    again = peak.peak_flops(remeasure=True, measure=m)
    assert m.calls == 2 and again["bf16"] == 2e12 and again["source"] == "measured now"
    assert peak.peak_flops(measure=m)["bf16"] == 2e12


def test_a_broken_cache_file_is_measured_again(home):
    m = FakeMeasure(5e11)
    key, _ = peak.device_key()
    (home / "peak").mkdir()
    (home / "peak" / f"{key}.json").write_text("{not json")
    assert peak.peak_flops(measure=m)["bf16"] == 5e11 and m.calls == 1


def test_the_key_changes_with_the_thread_count():
    import torch

    n = torch.get_num_threads()
    k1, _ = peak.device_key()
    torch.set_num_threads(n + 1)
    try:
        k2, desc = peak.device_key()
    finally:
        torch.set_num_threads(n)
    assert k1 != k2 and f"{n + 1} threads" in desc


@pytest.mark.parametrize("name,bf16", [("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                       ("NVIDIA H200", 989.4e12)])
def test_known_gpus_use_the_vendor_peak(name, bf16):
    v = peak.vendor_peak(name)
    assert v["bf16"] == pytest.approx(bf16) and v["source"] == "vendor" and "spec sheet" in v["method"]


def test_an_unknown_gpu_has_no_vendor_peak():
    assert peak.vendor_peak("Some Future Accelerator 9000") is None


@pytest.mark.parametrize("v,text", [(0.0166, "1.66%"), (0.179, "17.9%"), (0.000123, "0.0123%"), (None, "-")])
def test_mfu_prints_three_significant_digits(v, text):
    assert percent(v) == text


def test_the_peak_line_names_method_and_cache():
    line = peak_line({"fp32": 1e11, "bf16": 4.91e11, "method": "measured: best of 10", "source": "cache",
                      "cache_file": "/h/peak/x.json", "measured_at": "2026-12-06T17:00:00+00:00"})
    assert "bf16 peak of 491 GFLOP/s" in line and "best of 10" in line and "--remeasure-peak" in line
    assert "quiet machine" not in line


def test_a_peak_measured_on_a_busy_machine_says_so():
    line = peak_line({"fp32": 1e11, "method": "measured: best of 10", "source": "cache", "load_at_measure": 11.3})
    assert "11.3 runnable processes per core" in line and "quiet machine" in line


def test_the_real_measurement_is_sane():
    out = peak.measure_peak(n=256)
    assert 1e7 < out["fp32"] < 1e16 and "best of 10 single 256x256" in out["method"]
