"""builtin:tiny-vit and builtin:tiny-whisper: built offline, loaded by the Auto classes, with
processors that run without torchvision; the Whisper tokenizer round-trips transcripts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from danlu.models.builtin import builtin_path
from danlu.models.load import load_processor, model_class


def test_tiny_vit_loads_as_an_image_classifier():
    import torch

    path = builtin_path("builtin:tiny-vit")
    processor = load_processor("builtin:tiny-vit", "image")
    assert type(processor).__name__ == "ViTImageProcessorPil"
    model = model_class("image_cls").from_pretrained(str(path), num_labels=3)
    from PIL import Image

    pixels = processor(Image.new("RGB", (50, 40), (200, 10, 10)), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 32, 32)
    with torch.no_grad():
        assert tuple(model(pixel_values=pixels).logits.shape) == (1, 3)
    assert sum(p.numel() for p in model.parameters()) < 200_000


@pytest.mark.parametrize("text", ["yes no up", "是 否", "hello world, 你好"])
def test_tiny_whisper_tokenizer_round_trips_transcripts(text):
    processor = load_processor("builtin:tiny-whisper", "audio")
    tok = processor.tokenizer
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|startoftranscript|>") and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).strip() == text


def test_tiny_whisper_features_fit_its_encoder():
    path = builtin_path("builtin:tiny-whisper")
    config = json.loads((path / "config.json").read_text())
    fe = load_processor("builtin:tiny-whisper", "audio").feature_extractor
    feats = fe(np.zeros(8000, dtype=np.float32), sampling_rate=16000, return_tensors="np")["input_features"]
    assert feats.shape == (1, config["num_mel_bins"], 2 * config["max_source_positions"])


@pytest.mark.parametrize("task, words", [("asr", "speech recogniser"), ("image_cls", "image classifier")])
def test_chat_serve_eval_refuse_media_artefacts_plainly(tmp_path, task, words):
    from danlu.errors import UserError
    from danlu.infer.load import load_for_inference

    art = tmp_path / "run" / "model"
    art.mkdir(parents=True)
    (art / "danlu.json").write_text(json.dumps({"task": task, "stage": "asr", "artefact": "model"}))
    with pytest.raises(UserError, match=words):
        load_for_inference(str(tmp_path / "run"))
