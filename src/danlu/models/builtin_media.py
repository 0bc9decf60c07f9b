"""The image and speech `builtin:*` models, built offline from a config with a seeded random init
(danlu.models.builtin caches them like the text ones):

  tiny-vit      ViT-shaped image encoder: 32 px RGB images, 4 px patches, d=64, 2 layers, with a
                ViTImageProcessorPil (PIL only: no torchvision). `stage: classify` adds the head.
  tiny-whisper  Whisper-shaped speech recogniser: 40 mel bins, 2 s windows (16 kHz), d=64, 2+2 layers,
                a WhisperProcessor whose tokenizer is a 2,048-token byte-level BPE trained on the
                bundled corpus (English and Chinese) with Whisper's special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

BUILDER_VERSION = 3  # part of the cached folder's name: a change here rebuilds tiny-vit / tiny-whisper
SEED = 20250417
IMAGE_SIZE = 32
WHISPER_SECONDS = 2  # the feature extractor's window (chunk_length); clips are padded or cut to it
WHISPER_MELS = 40
WHISPER_VOCAB = 2048
WHISPER_SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                   "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _seeded(build):
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def vit_config(spec):
    from transformers import ViTConfig

    return ViTConfig(image_size=IMAGE_SIZE, patch_size=4, num_channels=3, hidden_size=spec.hidden,
                     num_hidden_layers=spec.layers, num_attention_heads=spec.heads, intermediate_size=spec.intermediate)


def build_vit(spec, out: Path, train_tokenizer=None) -> None:
    from transformers import ViTImageProcessorPil, ViTModel

    config = vit_config(spec)
    model = _seeded(lambda: ViTModel(config, add_pooling_layer=False))
    model.save_pretrained(str(out), safe_serialization=True)
    ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                         image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(str(out))


def whisper_tokenizer(train_tokenizer):
    """Whisper's tokenizer class over danlu's bundled byte-level BPE (`train_tokenizer`: the one
    builtin.py trains; no language token: the prefix is <|startoftranscript|><|notimestamps|>)."""
    from transformers import WhisperTokenizer

    raw = json.loads(train_tokenizer(WHISPER_SPECIAL, vocab_size=WHISPER_VOCAB).to_str())
    vocab, merges = raw["model"]["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                            for m in raw["model"]["merges"]]
    tok = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=448)
    tok.add_special_tokens({"additional_special_tokens": WHISPER_SPECIAL[1:]})
    tok.set_prefix_tokens(language=None, task=None, predict_timestamps=False)
    return tok


def whisper_config(spec, vocab: int, sot: int, eot: int):
    from transformers import WhisperConfig

    frames = WHISPER_SECONDS * 100  # 10 ms hops
    return WhisperConfig(
        vocab_size=(vocab + 63) // 64 * 64, num_mel_bins=WHISPER_MELS, d_model=spec.hidden,
        encoder_layers=spec.layers, decoder_layers=spec.layers, encoder_attention_heads=spec.heads,
        decoder_attention_heads=spec.heads, encoder_ffn_dim=spec.intermediate, decoder_ffn_dim=spec.intermediate,
        max_source_positions=frames // 2, max_target_positions=spec.max_positions,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        begin_suppress_tokens=None, suppress_tokens=None,
        # init std 1/sqrt(d), not 0.02: with 0.02 the convolutions' output is tiny beside the sinusoidal
        # positions, and the decoder learns the transcripts' word statistics long before it listens
        init_std=spec.hidden**-0.5,
    )


def build_whisper(spec, out: Path, train_tokenizer) -> None:
    from transformers import (GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor)

    tok = whisper_tokenizer(train_tokenizer)
    sot, eot = tok.convert_tokens_to_ids("<|startoftranscript|>"), tok.eos_token_id
    config = whisper_config(spec, len(tok), sot, eot)
    model = _seeded(lambda: WhisperForConditionalGeneration(config))
    model.save_pretrained(str(out), safe_serialization=True)
    # what Whisper's own generate() needs of a model without language tokens (written over the one
    # save_pretrained derived from the config, which transformers would re-derive on load)
    GenerationConfig(decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                     max_length=spec.max_positions, is_multilingual=False, forced_decoder_ids=None,
                     no_timestamps_token_id=tok.convert_tokens_to_ids("<|notimestamps|>")).save_pretrained(str(out))
    features = WhisperFeatureExtractor(feature_size=WHISPER_MELS, chunk_length=WHISPER_SECONDS)
    WhisperProcessor(feature_extractor=features, tokenizer=tok).save_pretrained(str(out))
