"""CPU memory that depends on how the model arrives, not on the training step: the tokenizer
(its vocabulary and merges live in the process all run long) and the loading phase, which on a
CPU can be the run's peak (measured: gemma-3-270m LoRA peaks while its fp32 checkpoint becomes
bf16, 2.6 GB, above its training step).

Loading phase, as transformers loads a safetensors checkpoint (bench/plan_calibrate.py records
the RSS of each moment; docs/notes/issue-18g.md):
- the process before the model: Python, torch, transformers, the tokenized dataset, and the
  tokenizer as it was built (its load-time heap is not trimmed yet);
- weights in the checkpoint's dtype are mapped from the file and paged in on use: they are the
  weights, counted once;
- weights converted (fp32 checkpoint → bf16 storage) or quantised (bitsandbytes) are read
  through the mapped file while the new tensors are made: the checkpoint's bytes are resident
  on top of the converted weights until loading ends."""

from __future__ import annotations

from pathlib import Path

from danlu.plan.calibration import calibration
from danlu.plan.terms import Term, gb

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def tokenizer_bytes(vocab: int, *, loading: bool = False) -> float:
    """RSS of the tokenizer in the process, proportional to its vocabulary (measured from 8k to
    262k entries): resident after the heap is trimmed, or as just built (`loading`)."""
    cal = calibration()
    per = cal.cpu_tokenizer_load_bytes_per_vocab if loading else cal.cpu_tokenizer_bytes_per_vocab
    return per * vocab


def checkpoint_bytes(spec) -> float:
    """Bytes of the model's weights files: the safetensors next to the config.json the shape came
    from (builtin, pkg:, a .gguf's dequantised copy, a local folder), else parameters × the
    config's dtype (bf16 when it names none: what hub checkpoints mostly are)."""
    if spec.checkpoint_bytes:
        return float(spec.checkpoint_bytes)
    source = Path(spec.arch.source) if spec.arch.source else None
    if source is not None and source.name == "config.json" and source.is_file():
        files = list(source.parent.glob("*.safetensors"))
        if files:
            return float(sum(f.stat().st_size for f in files))
    return float(spec.arch.n_params * DTYPE_BYTES.get(spec.arch.checkpoint_dtype, 2))


def mapped_checkpoint(spec) -> bool:
    """A quantised base on a CPU keeps its unquantised parts (embeddings, norms, output layer) in
    fp32: from an fp32 checkpoint they are views of the mapped file, so the mapping lives all run
    long, with every page the quantisation read (measured: RSS minus heap at a step's start is
    the checkpoint's size larger than LoRA's, SmolLM2 and gemma-3)."""
    if spec.device != "cpu" or not spec.shape.quant_bits:
        return False
    return abs(checkpoint_bytes(spec) / max(spec.arch.n_params, 1) - 4.0) < 0.5


def loading_terms(spec, weights: float, base_per_param: float | None) -> tuple[list[Term], float]:
    """(terms, RSS at the loading peak) on a CPU; `weights` are the model's weight terms and
    `base_per_param` the bytes per frozen parameter they hold (None: quantised)."""
    if spec.device != "cpu":
        return [], 0.0
    cal, arch = calibration(), spec.arch
    ckpt = checkpoint_bytes(spec)
    converted = base_per_param is None or abs(ckpt / max(arch.n_params, 1) - base_per_param) > 0.5
    mapped = ckpt if converted and not mapped_checkpoint(spec) else 0.0  # else: counted in the weights
    tok_now = tokenizer_bytes(arch.vocab, loading=True)
    data = (spec.dataset_tokens or 0) * cal.cpu_bytes_per_dataset_token
    how = ("quantised from" if base_per_param is None else "converted from") if converted else "mapped from"
    detail = (f"loading (before training; not part of a step): weights {how} a {gb(ckpt)} checkpoint"
              + (", whose pages stay resident until loading ends" if converted else "")
              + f"; tokenizer as built {gb(tok_now)}; process {gb(cal.cpu_load_runtime_bytes)}")
    transient = mapped + tok_now - tokenizer_bytes(arch.vocab)
    phase = cal.cpu_load_runtime_bytes + tok_now + data + weights + mapped
    return [Term("loading", transient, detail)], phase
