"""danlu plan on vision-language models: the image side's parameters equal the model's own
(meta-device instance of each builtin VLM), image tokens per image, and method.freeze_* take the
frozen image side out of what `full` trains."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name, image_tokens", [("builtin:tiny-vl", 4), ("builtin:tiny-llava", 16),
                                                ("builtin:tiny-gemma3", 4), ("builtin:tiny-idefics3", 4)])
def test_vision_params_match_the_model(name, image_tokens):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from danlu.models.builtin import builtin_path
    from danlu.models.processor import vision_part
    from danlu.plan.arch import resolve_arch

    arch = resolve_arch(name)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(builtin_path(name)))
    parts: dict = {}
    for n, p in model.named_parameters():
        parts[vision_part(n)] = parts.get(vision_part(n), 0) + p.numel()
    assert (arch.vision.tower_params, arch.vision.projector_params) == (parts["tower"], parts["projector"])
    assert arch.n_params == sum(parts.values())
    assert arch.vision.image_tokens == image_tokens


def test_freeze_options_set_what_full_trains():
    from danlu.plan.arch import resolve_arch
    from danlu.plan.spec import RunSpec

    arch = resolve_arch("builtin:tiny-vl")
    frozen = RunSpec(arch=arch, method_name="full", method={}).shape.trainable
    both = RunSpec(arch=arch, method_name="full",
                   method={"freeze_vision_tower": False, "freeze_projector": False}).shape.trainable
    assert both == arch.n_params and frozen == arch.n_params - arch.vision.params
