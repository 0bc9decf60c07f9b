"""Build the CPU benchmark of BENCHMARKS.md / issue 8 from LLaMA-Factory's demo data (never
shipped): a 32k byte-level BPE trained on alpaca zh+en, a ~33M-parameter Qwen2-shaped decoder
with random weights (only shapes matter for speed), 400 alpaca rows, and a long-conversation set
(lengths log-normal up to 2,048 tokens) to exercise packing.

    python bench/make_cpu_bench.py [--shared ../shared] [--out bench/.work]
Writes OUT/model/ (HF directory), OUT/alpaca400.jsonl, OUT/long.jsonl and prints their stats."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def alpaca_rows(shared: Path) -> list[dict]:
    rows = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        rows += json.loads((shared / "interop" / "llamafactory" / name).read_text(encoding="utf-8"))
    return rows


def build_tokenizer(texts: list[str], vocab: int = 32000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])


def build_model(tok, out: Path) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def seed_format(r: dict) -> str:
    return f"User: {r['instruction']}\n{r.get('input', '')}\nAssistant: {r['output']}"


def long_conversations(rows: list[dict], tok, n: int = 120, seed: int = 0) -> list[dict]:
    """Multi-turn texts whose token lengths are log-normal (median ~600), capped at 2,048."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = min(2048, int(rng.lognormvariate(6.4, 0.6)))
        parts, length = [], 0
        while length < target:
            text = seed_format(rng.choice(rows))
            parts.append(text)
            length += len(tok(text)["input_ids"]) + 1
        out.append({"text": "\n".join(parts)})
    return out


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
    rng = random.Random(42)
    en = [r for r in rows if r["instruction"].isascii()]
    zh = [r for r in rows if not r["instruction"].isascii()]
    pick = rng.sample(en, 200) + rng.sample(zh, 200)
    rng.shuffle(pick)
    with open(out / "alpaca400.jsonl", "w", encoding="utf-8") as fh:
        for r in pick:
            fh.write(json.dumps({"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]},
                                ensure_ascii=False) + "\n")
    with open(out / "long.jsonl", "w", encoding="utf-8") as fh:
        for r in long_conversations(rows, tok):
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    lengths = sorted(len(tok(seed_format(r))["input_ids"]) for r in pick)
    print(f"model: {params / 1e6:.1f}M parameters → {out / 'model'}")
    print(f"alpaca400: median {lengths[len(lengths) // 2]} tokens, p90 {lengths[int(0.9 * len(lengths))]}, "
          f"max {lengths[-1]}")


if __name__ == "__main__":
    main()
