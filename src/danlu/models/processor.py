"""Loading a vision-language model's processor, also where torchvision is missing.

transformers' video processors need torchvision; a processor class that takes one (Qwen2-VL,
Qwen2.5-VL, SmolVLM ...) then refuses to build even for images only. `load_processor` tries
`AutoProcessor` first and otherwise builds the same processor class without its video part (a
subclass made on the fly that accepts no video processor: same image processor, tokenizer, chat
template and token expansion), so images work everywhere and videos need torchvision, as they do in transformers."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
_IMAGE_ONLY: dict[type, type] = {}
# where each family keeps its vision tower and its projector (module name prefixes)
VISION_TOWERS = ("visual", "vision_tower", "vision_model")
PROJECTORS = ("visual.merger", "multi_modal_projector", "connector")
VLM_ARCHS = ("ForConditionalGeneration", "ForImageTextToText", "ForVisionText2Text")


def vision_part(name: str) -> str | None:
    """'projector', 'tower' or None (the language model) for a parameter or module name."""
    parts = name.split(".")
    for i in range(len(parts)):
        tail = ".".join(parts[i:])
        if any(tail == p or tail.startswith(p + ".") for p in PROJECTORS):
            return "projector"
    return "tower" if any(p in VISION_TOWERS for p in parts) else None


def freeze_vision(model, *, tower: bool, projector: bool) -> int:
    """requires_grad off for the vision tower and/or the projector; the number of tensors frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        part = vision_part(name)
        if (part == "tower" and tower) or (part == "projector" and projector):
            if param.requires_grad:
                param.requires_grad_(False)
                frozen += 1
    return frozen


def language_linear_targets(model, *, tower: bool, projector: bool) -> list[str]:
    """Full names of the linear layers LoRA adapts on a vision-language model: the language model's,
    plus the tower's / projector's when they are not frozen (never the output head)."""
    import torch.nn as nn

    out = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.endswith("lm_head"):
            continue
        part = vision_part(name)
        if part is None or (part == "tower" and tower) or (part == "projector" and projector):
            out.append(name)
    return out


def is_vision_config(config) -> bool:
    """A vision-language model's config: it has a `vision_config` (Qwen2-VL, LLaVA, Idefics3, Gemma 3 ...)."""
    return getattr(config, "vision_config", None) is not None


def image_only(cls: type) -> type:
    """`cls` that accepts a missing video_processor (a subclass of the same name; cached per class)."""
    if cls not in _IMAGE_ONLY:

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None and argument_name == "video_processor":
                return None
            return cls.check_argument_for_proper_class(self, argument_name, argument)

        _IMAGE_ONLY[cls] = type(cls.__name__, (cls,), {"check_argument_for_proper_class": check_argument_for_proper_class,
                                                       "__module__": cls.__module__})
    return _IMAGE_ONLY[cls]


def load_processor(path: str | Path):
    """The processor saved in `path` (a model folder)."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(path))
    except (AttributeError, ImportError, TypeError, ValueError) as e:
        cls = _processor_class(Path(path))
        if cls is None or "video_processor" not in inspect.signature(cls.__init__).parameters:
            raise
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        log.info("loading %s without its video processor (%s)", cls.__name__, reason.strip())
        return build_image_only(cls, Path(path))


def build_image_only(cls: type, path: Path):
    from transformers import AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    images = AutoImageProcessor.from_pretrained(str(path))
    kwargs = _processor_kwargs(path)
    return image_only(cls)(image_processor=images, tokenizer=tok, chat_template=tok.chat_template or None, **kwargs)


def _processor_class(path: Path):
    import transformers

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        f = path / name
        if f.exists():
            cls = json.loads(f.read_text(encoding="utf-8")).get("processor_class")
            if cls and hasattr(transformers, cls):
                return getattr(transformers, cls)
    return None


def _processor_kwargs(path: Path) -> dict:
    f = path / "processor_config.json"
    if not f.exists():
        return {}
    data = json.loads(f.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k != "processor_class" and not isinstance(v, dict)}


def save_processor(proc, out: str | Path) -> None:
    """`proc.save_pretrained(out)`; a processor without its video part saves its image processor,
    tokenizer (with the chat template) and a processor_config.json naming the class, which is what
    `AutoProcessor` (with torchvision) and `load_processor` (without) read back."""
    out = Path(out)
    if getattr(proc, "video_processor", True) is not None:
        proc.save_pretrained(str(out))
        return
    proc.image_processor.save_pretrained(str(out))
    proc.tokenizer.save_pretrained(str(out))
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": type(proc).__name__}, indent=2) + "\n", encoding="utf-8")
