"""danlu plan reads image (ViT) and speech (Whisper) configs roughly: parameters within 10 % of the
built model, and the image stage's positions per sample from the patch grid."""

from __future__ import annotations

import pytest

from danlu.plan.arch import resolve_arch
from danlu.plan.media_arch import as_text_config


@pytest.mark.parametrize("name, task", [("builtin:tiny-vit", "image_cls"), ("builtin:tiny-whisper", "asr")])
def test_media_params_roughly_right(name, task):
    from danlu.models.builtin import builtin_path
    from danlu.models.load import model_class

    kwargs = {"num_labels": 3} if task == "image_cls" else {}
    model = model_class(task).from_pretrained(str(builtin_path(name)), **kwargs)
    real = sum(p.numel() for p in model.parameters())
    assert resolve_arch(name).n_params == pytest.approx(real, rel=0.1)


def test_vit_positions_are_patches_plus_cls():
    cfg = as_text_config({"model_type": "vit", "image_size": 224, "patch_size": 16, "num_channels": 3,
                          "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072})
    assert cfg["max_position_embeddings"] == 197 and cfg["vocab_size"] == 768
    assert as_text_config({"model_type": "qwen2", "hidden_size": 8}) == {"model_type": "qwen2", "hidden_size": 8}
