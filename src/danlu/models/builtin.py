"""`builtin:*` models: small deterministic decoders (and one encoder) with a byte-level BPE
tokenizer and a chat template, built offline in seconds and cached as ordinary Hugging Face
directories, so every later step (train, chat, export, serve) treats them like a download.

The tokenizer is trained on `assets/corpus.txt` (English and Chinese); the weights are a
seeded random init. Sizes:
  tiny        Qwen2-shaped, d=64,  2 layers (attention biases: bitfit works)   ~0.6M params
  mini        Qwen2-shaped, d=192, 4 layers (the quickstart's model)           ~3.2M
  small       Qwen2-shaped, d=256, 4 layers                                    ~5.3M
  tiny-llama  Llama-shaped, d=64,  2 layers, no biases
  tiny-bert   BERT-shaped encoder, d=64, 2 layers (classification)
  tiny-vit    ViT-shaped image encoder, 32 px images (image classification; models/builtin_media.py)
  tiny-whisper  Whisper-shaped speech recogniser, 2 s clips (stage: asr; models/builtin_media.py)
  tiny-vl     Qwen2-VL-shaped vision-language model, 56 px images (models/builtin_vlm.py)  ~0.8M
  tiny-llava  LLaVA-shaped: tiny CLIP vision tower + projector + tiny Llama, 56 px images
  tiny-gemma3 Gemma 3-shaped: tiny SigLIP tower pooled to 4 soft tokens + tiny Gemma 3 text model
  tiny-idefics3  Idefics3 / SmolVLM-shaped: tiny SigLIP-style tower, pixel shuffle + linear connector, tiny Llama
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from danlu.errors import UserError
from danlu.models.builtin_vlm import VLM_SPECS, VlmSpec, build_vlm
from danlu.paths import danlu_home

ASSETS = Path(__file__).parent / "assets"
BUILDER_VERSION = 2
VOCAB_SIZE = 8192
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Qwen2.5-style ChatML with tool calling (tools in the system turn, <tool_call> JSON blocks).
CHATML_TOOLS_TEMPLATE = (ASSETS / "chatml_tools.jinja") if (ASSETS / "chatml_tools.jinja").exists() else None


@dataclass(frozen=True)
class Spec:
    arch: str  # qwen2 | llama | bert | vit | whisper
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    max_positions: int = 2048


SPECS: dict[str, Spec] = {
    "tiny": Spec("qwen2", 64, 2, 4, 2, 176),
    "small": Spec("qwen2", 256, 4, 8, 4, 704),
    "mini": Spec("qwen2", 192, 4, 6, 2, 512),
    "tiny-llama": Spec("llama", 64, 2, 4, 2, 176),
    "tiny-bert": Spec("bert", 64, 2, 4, 4, 128, max_positions=512),
    "tiny-vit": Spec("vit", 64, 2, 4, 4, 128),
    "tiny-whisper": Spec("whisper", 64, 2, 4, 4, 128, max_positions=64),
    **VLM_SPECS,  # vision-language: arch qwen2-vl | llava | gemma3 | idefics3
}


def is_builtin(name: str) -> bool:
    return name.startswith("builtin:")


def builtin_path(name: str) -> Path:
    """The cached directory of `builtin:NAME`, built on first use (atomically, safe across processes)."""
    key = name.split(":", 1)[1]
    if key not in SPECS:
        raise UserError(f"unknown builtin model {name!r}; choose one of: " + ", ".join(f"builtin:{k}" for k in SPECS))
    spec = SPECS[key]
    digest = hashlib.sha256(
        json.dumps([BUILDER_VERSION, VOCAB_SIZE, asdict(spec), _corpus_digest()] + _media_version(spec),
                   sort_keys=True).encode()
    ).hexdigest()[:12]
    target = danlu_home() / "builtin" / f"{key}-{digest}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        _build(spec, tmp)
        from danlu.files import normal_modes

        normal_modes(tmp)  # mkdtemp made it 0700, safetensors its weights 0600
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _media_version(spec: Spec) -> list:
    """The image / speech builders' own version (models/builtin_media.py), in their digest only."""
    if spec.arch not in ("vit", "whisper"):
        return []
    from danlu.models.builtin_media import BUILDER_VERSION as MEDIA_VERSION

    return [MEDIA_VERSION]


def _corpus_digest() -> str:
    return hashlib.sha256((ASSETS / "corpus.txt").read_bytes()).hexdigest()


def train_tokenizer(special_tokens: list[str], vocab_size: int = VOCAB_SIZE):
    """Byte-level BPE trained on the bundled corpus (deterministic: same corpus → same vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = (ASSETS / "corpus.txt").read_text(encoding="utf-8")
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    return tok


def _chat_template() -> str:
    return (ASSETS / "chatml_tools.jinja").read_text(encoding="utf-8")


def _decoder_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(SPECIAL_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=2048,
        padding_side="right",
    )
    tok.chat_template = _chat_template()
    return tok


def _bert_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = train_tokenizer(BERT_SPECIAL_TOKENS)
    cls_id, sep_id = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def _model_config(spec: Spec, tok):
    vocab = (len(tok) + 63) // 64 * 64
    if spec.arch == "bert":
        from transformers import BertConfig

        return BertConfig(
            vocab_size=vocab,
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            intermediate_size=spec.intermediate,
            max_position_embeddings=spec.max_positions,
            pad_token_id=tok.pad_token_id,
            initializer_range=spec.hidden**-0.5,
        )
    from transformers import LlamaConfig, Qwen2Config

    cls = Qwen2Config if spec.arch == "qwen2" else LlamaConfig
    return cls(
        vocab_size=vocab,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
        # init std 1/sqrt(d), not the usual 0.02: with tied embeddings, 0.02 keeps the logits of a
        # random model so small that a frozen base (LoRA, IA3, prompt tuning) can barely learn
        initializer_range=spec.hidden**-0.5,
    )


def _build(spec: Spec, out: Path) -> None:
    if isinstance(spec, VlmSpec):
        return build_vlm(spec, out, train_tokenizer(SPECIAL_TOKENS))
    if spec.arch in ("vit", "whisper"):
        from danlu.models import builtin_media

        build = builtin_media.build_vit if spec.arch == "vit" else builtin_media.build_whisper
        return build(spec, out, train_tokenizer)
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, GenerationConfig

    tok = _bert_tokenizer() if spec.arch == "bert" else _decoder_tokenizer()
    config = _model_config(spec, tok)
    state = torch.random.get_rng_state()
    torch.manual_seed(20250417)
    try:
        model = (AutoModel if spec.arch == "bert" else AutoModelForCausalLM).from_config(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    if spec.arch != "bert":
        eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
        GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(str(out))
