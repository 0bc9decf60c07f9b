"""The CPU loading phase and the tokenizer term (danlu.plan.loading): what the checkpoint's dtype,
the method and the vocabulary add, by hand."""

from __future__ import annotations

import pytest

from danlu.plan.arch import resolve_arch
from danlu.plan.calibration import calibration
from danlu.plan.estimate import estimate_memory
from danlu.plan.spec import RunSpec

GEMMA = "google/gemma-3-270m"


def cpu_spec(method="lora", opts=None, ckpt_per_param=4, **kw) -> RunSpec:
    arch = resolve_arch(GEMMA)
    kw.setdefault("batch_size", 1)
    kw.setdefault("max_length", 256)
    return RunSpec(arch, method, opts if opts is not None else {"r": 8}, device="cpu", precision="bf16",
                   checkpoint_bytes=arch.n_params * ckpt_per_param, **kw)


def loading(est) -> float:
    return est.phases["loading"]


def test_converted_checkpoint_stays_mapped_while_loading():
    cal, s = calibration(), cpu_spec()
    est = estimate_memory(s)
    weights = est.term("weights") + est.term("trainable")
    tok = cal.cpu_tokenizer_load_bytes_per_vocab * s.arch.vocab
    # fp32 file → bf16 weights: the file's pages and the new weights at once
    assert loading(est) == pytest.approx(cal.cpu_load_runtime_bytes + tok + weights + s.arch.n_params * 4)
    same = estimate_memory(cpu_spec(ckpt_per_param=2))  # a bf16 checkpoint is mapped, not copied
    assert loading(same) == pytest.approx(loading(est) - s.arch.n_params * 4)


@pytest.mark.parametrize("method,opts,ckpt_per_param,extra_file,file_in_weights", [
    ("full", {}, 4, False, False),  # fp32 weights trained in place: the mapped fp32 file is the weights
    ("lora", {"r": 8}, 4, True, False),  # bf16 storage made from the fp32 file: both while loading
    ("qlora", {"r": 8}, 4, False, True),  # fp32 embeddings/norms stay views of the file: mapped all run
    ("qlora", {"r": 8}, 2, True, False),  # a bf16 file is upcast to fp32 copies, then let go
])
def test_loading_by_method(method, opts, ckpt_per_param, extra_file, file_in_weights):
    cal, arch = calibration(), resolve_arch(GEMMA)
    est = estimate_memory(cpu_spec(method, opts, ckpt_per_param=ckpt_per_param))
    tok_transient = (cal.cpu_tokenizer_load_bytes_per_vocab - cal.cpu_tokenizer_bytes_per_vocab) * arch.vocab
    file = arch.n_params * ckpt_per_param
    assert est.term("loading") - tok_transient == pytest.approx(file if extra_file else 0)
    if method == "qlora":
        packed = est.term("weights") - (file if file_in_weights else 4 * (arch.n_params - arch.linear_params))
        assert packed == pytest.approx(arch.linear_params * (0.5 + 1 / 64 + 4 / (64 * 256)))  # NF4, double quant


def test_tokenizer_term_scales_with_the_vocabulary():
    cal = calibration()
    est = estimate_memory(cpu_spec())
    assert any(t.key == "runtime" and "tokenizer" in t.detail for t in est.terms)
    tok = next(t.bytes for t in est.terms if t.key == "runtime" and "tokenizer" in t.detail)
    assert tok == cal.cpu_tokenizer_bytes_per_vocab * 262_144
    assert 200 * 2**20 < tok < 350 * 2**20  # measured 265 MiB for gemma-3's tokenizer


def test_no_loading_phase_on_a_gpu():
    arch = resolve_arch(GEMMA)
    est = estimate_memory(RunSpec(arch, "lora", {"r": 8}, device="cuda", batch_size=1, max_length=256))
    assert "loading" not in est.phases and est.term("loading") == 0
