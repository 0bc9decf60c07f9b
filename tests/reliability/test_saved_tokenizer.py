"""Issue 19 item 9: a tokenizer saved next to a qwen2 config is used as saved. transformers 5
loads it as Qwen2Tokenizer with Qwen2's pre-tokenizer (digits one by one) instead of the saved
tokenizer.json's (GPT-2 byte-level: "123" one piece); danlu's load_tokenizer must give the file's
split, keep the special tokens and chat template, and say so in the log."""

from __future__ import annotations

import json
import logging

import pytest

TEXT = "Hello world, 你好世界 123"
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2 regex: digit runs stay whole
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator([TEXT, "123 456 123 2024 hello world 你好"] * 20, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = TEMPLATE
    out = tmp_path_factory.mktemp("saved")
    tok.save_pretrained(out)
    Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1).save_pretrained(out)
    return out


def test_transformers_alone_resplits_it(saved_dir):
    """The premise: if this starts to pass through, transformers fixed it and the check is a no-op."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    file_pieces = Tokenizer.from_file(str(saved_dir / "tokenizer.json")).encode(TEXT).tokens
    assert "Ġ123" in file_pieces
    if AutoTokenizer.from_pretrained(saved_dir).tokenize(TEXT) == file_pieces:
        pytest.skip("this transformers keeps the saved pre-tokenizer")


def test_load_tokenizer_uses_the_saved_file(saved_dir, caplog):
    from tokenizers import Tokenizer

    from danlu.models.load import load_tokenizer

    with caplog.at_level(logging.WARNING, logger="danlu.models.saved_tokenizer"):
        tok = load_tokenizer(str(saved_dir))
    raw = Tokenizer.from_file(str(saved_dir / "tokenizer.json"))
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == raw.encode(TEXT, add_special_tokens=False).ids
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.chat_template == TEMPLATE
    assert "<|im_start|>" in tok.all_special_tokens
    config = json.loads((saved_dir / "tokenizer_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_start|>") == raw.token_to_id("<|im_start|>"), config
    assert "splits text differently from the saved tokenizer.json" in caplog.text and "Ġ123" in caplog.text


def test_builtin_model_trains_with_its_own_file():
    from tokenizers import Tokenizer

    from danlu.models.builtin import builtin_path
    from danlu.models.load import load_tokenizer

    tok = load_tokenizer("builtin:tiny")
    raw = Tokenizer.from_file(str(builtin_path("builtin:tiny") / "tokenizer.json"))
    for text in (TEXT, "It's 2024-06-01: x=3.14159!!  end\n\n"):
        assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids


def test_a_file_saved_with_padding_on_is_not_a_difference(saved_dir, tmp_path):
    """BERT-style tokenizer.json files (the MiniLM package's) are saved with padding to a fixed
    length: one encode of the probe then carries [PAD] pieces that the loaded tokenizer does not add.
    That is a setting of the file, not another split: the load must go through unchanged."""
    import shutil

    from tokenizers import Tokenizer

    from danlu.models.load import load_tokenizer

    padded = tmp_path / "padded"
    shutil.copytree(saved_dir, padded)
    raw = Tokenizer.from_file(str(padded / "tokenizer.json"))
    raw.enable_padding(pad_id=0, pad_token="<|endoftext|>", length=128)
    raw.save(str(padded / "tokenizer.json"))
    tok = load_tokenizer(str(padded))
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == Tokenizer.from_file(
        str(saved_dir / "tokenizer.json")).encode(TEXT, add_special_tokens=False).ids
