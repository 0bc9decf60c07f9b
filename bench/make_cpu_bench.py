"""Build the CPU benchmark of BENCHMARKS.md / issue 8 from LLaMA-Factory's demo data (never
shipped): a 32k byte-level BPE trained on alpaca zh+en, a ~33M-parameter Qwen2-shaped decoder
with random weights (only shapes matter for speed), 400 alpaca rows, and a long-conversation set
(lengths log-normal up to 2,048 tokens) to exercise packing.

    python bench/make_cpu_bench.py [--shared ../shared] [--out bench/.work]
Writes OUT/model/ (HF directory), OUT/alpaca400.jsonl, OUT/long.jsonl and prints their stats."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchdata import (VOCAB, alpaca_rows, alpaca_sample, build_tokenizer, lengths_line, long_conversations,
                       seed_format, write_jsonl)

ROOT = Path(__file__).resolve().parent.parent


def build_model(tok, out: Path) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "bench" / ".work"))
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = alpaca_rows(shared)
    tok = build_tokenizer([seed_format(r) for r in rows])
    params = build_model(tok, out / "model")
    pick = alpaca_sample(rows)
    write_jsonl(out / "alpaca400.jsonl", pick)
    write_jsonl(out / "long.jsonl", long_conversations(rows, tok))
    print(f"model: {params / 1e6:.1f}M parameters → {out / 'model'}")
    print(lengths_line("alpaca400", [len(tok(seed_format(r))["input_ids"]) for r in pick]))


if __name__ == "__main__":
    main()
