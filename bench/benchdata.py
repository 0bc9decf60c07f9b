"""What the CPU and GPU benchmarks share: LLaMA-Factory's alpaca demo rows (zh+en, from
../shared, never shipped), the 32k byte-level BPE trained on them, the seed's prompt format,
the 400-row alpaca sample and the long-conversation set (log-normal lengths up to 2,048 tokens)."""

from __future__ import annotations

import json
import random
from pathlib import Path

VOCAB = 32000


def alpaca_rows(shared: Path) -> list[dict]:
    rows = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        rows += json.loads((shared / "interop" / "llamafactory" / name).read_text(encoding="utf-8"))
    return rows


def build_tokenizer(texts: list[str], vocab: int = VOCAB):
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


def seed_format(r: dict) -> str:
    return f"User: {r['instruction']}\n{r.get('input', '')}\nAssistant: {r['output']}"


def alpaca_sample(rows: list[dict], n_each: int = 200, seed: int = 42) -> list[dict]:
    """n_each English and n_each Chinese rows, shuffled."""
    rng = random.Random(seed)
    en = [r for r in rows if r["instruction"].isascii()]
    zh = [r for r in rows if not r["instruction"].isascii()]
    pick = rng.sample(en, n_each) + rng.sample(zh, n_each)
    rng.shuffle(pick)
    return [{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]} for r in pick]


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


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def lengths_line(name: str, lengths: list[int]) -> str:
    lengths = sorted(lengths)
    return (f"{name}: {len(lengths)} rows, median {lengths[len(lengths) // 2]} tokens, "
            f"p90 {lengths[int(0.9 * len(lengths))]}, max {lengths[-1]}")
