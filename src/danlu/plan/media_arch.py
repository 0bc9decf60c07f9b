"""Image and speech models in the planner, roughly: their config.json read as the text shape the
planner knows. A ViT-family image encoder is a BERT-like encoder whose "vocabulary" is the patch
projection (channels × patch²) and whose positions are the patches (+ [CLS]); a Whisper model is an
encoder-decoder of plain (fc1 / fc2) blocks counted as encoder + decoder layers, with the decoder's
cross-attention added as a third of a layer each. Parameter counts land within a few percent;
activations follow the transcript tokens (decoder) or the patches (ViT), not the audio encoder's frames."""

from __future__ import annotations

IMAGE_ENCODERS = ("vit", "deit", "beit", "dinov2", "vit_msn", "data2vec-vision")


def as_text_config(cfg: dict) -> dict:
    """A text-shaped copy of an image / speech config, or `cfg` itself."""
    model_type = str(cfg.get("model_type", ""))
    if model_type in IMAGE_ENCODERS and "image_size" in cfg:
        image = cfg["image_size"] if isinstance(cfg["image_size"], int) else cfg["image_size"][0]
        patch = cfg.get("patch_size", 16) if isinstance(cfg.get("patch_size", 16), int) else cfg["patch_size"][0]
        return {**cfg, "model_type": "vit", "vocab_size": int(cfg.get("num_channels", 3)) * patch * patch,
                "max_position_embeddings": (image // patch) ** 2 + 1, "type_vocab_size": 0}
    if model_type == "whisper":
        enc, dec = int(cfg["encoder_layers"]), int(cfg["decoder_layers"])
        return {**cfg, "hidden_size": cfg["d_model"], "num_hidden_layers": enc + dec + (dec + 2) // 3,
                "num_attention_heads": cfg["decoder_attention_heads"], "intermediate_size": cfg["decoder_ffn_dim"],
                "max_position_embeddings": cfg.get("max_target_positions", 448)}
    return cfg
