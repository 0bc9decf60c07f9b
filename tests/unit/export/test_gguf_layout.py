"""GGUF layout: the q/k permutation turns HF's rotate-half RoPE into llama.cpp's interleaved
RoPE (checked by applying both), the pre-tokenizer names, the padded vocabulary."""

from __future__ import annotations

import pytest
import torch

from danlu.errors import UserError
from danlu.export.gguf import PRE_TOKENIZERS, permute, pre_tokenizer, unpermute, vocab


def rope_hf(q, pos, base=10000.0):
    """transformers: q*cos + rotate_half(q)*sin, frequencies repeated over the two halves. q: (H, d)"""
    d = q.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.cat([pos * inv, pos * inv])
    rot = torch.cat([-q[..., d // 2:], q[..., : d // 2]], dim=-1)
    return q * ang.cos() + rot * ang.sin()


def rope_interleaved(q, pos, base=10000.0):
    """llama.cpp (LLAMA_ROPE_TYPE_NORM): pairs (2i, 2i+1) rotated by pos * base^(-2i/d)."""
    d = q.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    x, y = q[..., 0::2], q[..., 1::2]
    c, s = (pos * inv).cos(), (pos * inv).sin()
    out = torch.empty_like(q)
    out[..., 0::2], out[..., 1::2] = x * c - y * s, x * s + y * c
    return out


@pytest.mark.parametrize("heads, head_dim", [(4, 16), (2, 8), (8, 64)])
def test_permuted_weights_under_interleaved_rope_equal_hf_rope(heads, head_dim):
    torch.manual_seed(heads)
    w = torch.randn(heads * head_dim, 32, dtype=torch.float64)
    x = torch.randn(32, dtype=torch.float64)
    for pos in (0, 1, 7, 300):
        hf = rope_hf((w @ x).view(heads, head_dim), pos)
        cpp = rope_interleaved((torch.from_numpy(permute(w.numpy(), heads)) @ x).view(heads, head_dim), pos)
        # the same vectors up to the per-head reordering, so every q·k dot product is equal
        back = torch.from_numpy(unpermute(cpp.reshape(-1, 1).numpy(), heads)).view(heads, head_dim)
        assert torch.allclose(back, hf, atol=1e-10)


def test_unpermute_inverts_permute():
    w = torch.randn(64, 12).numpy()
    assert (unpermute(permute(w, 4), 4) == w).all()
    assert not (permute(w, 4) == w).all()


def tok_json(pre, model_type="BPE", byte_fallback=False):
    return {"model": {"type": model_type, "byte_fallback": byte_fallback}, "decoder": {"type": "ByteLevel"},
            "pre_tokenizer": pre}


@pytest.mark.parametrize("regex, name", list(PRE_TOKENIZERS.items()))
def test_known_split_regexes_are_named(regex, name):
    pre = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": regex}},
                                                 {"type": "ByteLevel", "use_regex": False}]}
    assert pre_tokenizer(tok_json(pre)) == name


def test_plain_byte_level_is_gpt2_and_unknown_ones_are_refused():
    assert pre_tokenizer(tok_json({"type": "ByteLevel", "use_regex": True})) == "gpt-2"
    with pytest.raises(UserError, match="pre-tokenizer"):
        pre_tokenizer(tok_json({"type": "Split", "pattern": {"Regex": "\\w+"}}))
    with pytest.raises(UserError, match="byte-level BPE"):
        pre_tokenizer(tok_json({"type": "Metaspace"}, byte_fallback=True))


def test_vocab_marks_special_tokens_and_pads_the_model_rows(tiny_tokenizer):
    from gguf import TokenType

    n = len(tiny_tokenizer) + 5
    tokens, types, merges, pre = vocab(tiny_tokenizer, n)
    assert len(tokens) == len(types) == n and merges
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokens[im_end] == "<|im_end|>" and types[im_end] == TokenType.CONTROL
    assert tokens[-1] == f"[PAD{n - 1}]" and types[-1] == TokenType.UNUSED
    assert types[100] == TokenType.NORMAL and tokens[100] == tiny_tokenizer.convert_ids_to_tokens(100)


@pytest.mark.parametrize("kind", ["q4_k_m", "q5_k_m", "q6_k"])
def test_k_quants_without_llama_cpp_say_what_to_install(monkeypatch, kind):
    import sys

    from danlu.errors import UserError
    from danlu.export.run import ExportOptions

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp → ImportError
    with pytest.raises(UserError) as err:
        ExportOptions(gguf=True, gguf_type=kind).validate()
    assert err.value.where == "--gguf-type" and "pip install 'danlu[llamacpp]'" in str(err.value.hint)
    ExportOptions(gguf=True, gguf_type="q8_0").validate()  # f16 / q8_0 need only the gguf package


def test_unknown_gguf_types_list_the_choices():
    from danlu.errors import UserError
    from danlu.export.run import ExportOptions

    with pytest.raises(UserError) as err:
        ExportOptions(gguf=True, gguf_type="q3_k_s").validate()
    assert "q4_k_m" in str(err.value.hint) and "q6_k" in str(err.value.hint)
