"""Build the GPU benchmark of issue 8: a Qwen2.5-1.5B-shaped decoder (hidden 1536, intermediate
8960, 28 layers, 12 heads, 2 KV heads, vocabulary 151,936, tied embeddings) with random bf16
weights (only shapes matter for speed), the CPU bench's 32k tokenizer (ids < 32k fit the larger
embedding, as Qwen's own 151,665 tokens fit its 151,936 rows), and a mixed-length set: the 400
alpaca rows plus the 120 long conversations, shuffled (padding-free packing pays on mixed lengths).

Two places, because the device machine reaches no network and has no ../shared:

    python bench/make_gpu_bench.py --no-model   # here: OUT/tokenizer/ and OUT/mix.jsonl (~3 MB)
    python bench/make_gpu_bench.py              # on the GPU machine: OUT/model/ (3.1 GB), from them

Each step is skipped when its output exists. OUT defaults to bench/.work/gpu."""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from benchdata import (alpaca_rows, alpaca_sample, build_tokenizer, lengths_line, long_conversations, seed_format,
                       write_jsonl)

ROOT = Path(__file__).resolve().parent.parent
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)


def tokenizer(out: Path, shared: Path, cpu_bench: Path):
    """OUT/tokenizer: the CPU bench's trained tokenizer if it exists, else trained the same way."""
    from transformers import AutoTokenizer

    target = out / "tokenizer"
    if not (target / "tokenizer.json").exists():
        if (cpu_bench / "tokenizer.json").exists():
            tok = AutoTokenizer.from_pretrained(str(cpu_bench))
        else:
            tok = build_tokenizer([seed_format(r) for r in alpaca_rows(shared)])
        tok.save_pretrained(str(target))
    return AutoTokenizer.from_pretrained(str(target))


def data(out: Path, shared: Path, tok) -> None:
    """OUT/mix.jsonl: 400 alpaca rows (seed format) and 120 long conversations, shuffled."""
    path = out / "mix.jsonl"
    if path.exists():
        return
    rows = alpaca_rows(shared)
    mix = [{"text": seed_format(r)} for r in alpaca_sample(rows)] + long_conversations(rows, tok)
    random.Random(7).shuffle(mix)
    write_jsonl(path, mix)
    print(lengths_line("mix", [len(tok(r["text"])["input_ids"]) + 1 for r in mix]))


def model(out: Path, tok) -> None:
    """OUT/model: random weights, initialised on the GPU when there is one (seconds, not minutes)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = out / "model"
    if (target / "model.safetensors.index.json").exists() or (target / "model.safetensors").exists():
        return
    cfg = Qwen2Config(**QWEN25_15B, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        net = Qwen2ForCausalLM(cfg).to(torch.bfloat16)  # Qwen2.5 ships bf16 weights
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    tmp.rename(target)
    print(f"model: {sum(p.numel() for p in net.parameters()) / 1e9:.3f}B parameters → {target}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "bench" / ".work" / "gpu"))
    ap.add_argument("--cpu-bench", default=str(ROOT / "bench" / ".work" / "model"),
                    help="the CPU bench's model folder, whose tokenizer is reused")
    ap.add_argument("--no-model", action="store_true", help="tokenizer and data only (no weights)")
    args = ap.parse_args()
    out, shared = Path(args.out), Path(args.shared)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer(out, shared, Path(args.cpu_bench))
    data(out, shared, tok)
    if not args.no_model:
        model(out, tok)


if __name__ == "__main__":
    main()
