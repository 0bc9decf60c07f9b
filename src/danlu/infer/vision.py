"""Vision-language models at inference (what `danlu chat --image`, `danlu serve`, `danlu eval` and
`danlu export --merge` share): detect one, load its processor, turn a conversation whose user turns
carry images into the processor's inputs, and generate greedily or with seeded sampling.

A conversation here is a list of {"role", "content"} where content is a string or a list of parts:
{"type": "text", "text"} and {"type": "image", "image": PIL image | path}. The prompt is rendered by
the processor's own chat template (the one training used), with each image part as the family's
placeholder, which the processor expands into the image tokens."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_PART_TYPES = ("image", "image_url")


def config_is_vision(config) -> bool:
    """A transformers config (or its dict) of an image-text-to-text model."""
    if isinstance(config, dict):
        return bool(config.get("vision_config"))
    return getattr(config, "vision_config", None) is not None


def is_vision_folder(folder: str | Path) -> bool:
    """A local model folder whose config.json has a vision tower."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        return config_is_vision(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def is_vision_model(name_or_path: str) -> bool:
    """A model name or folder (builtin:*, a local folder) that is a vision-language model; a hub id
    not yet on this machine reads as text-only."""
    from danlu.models.load import resolve_model_path

    try:
        return is_vision_folder(resolve_model_path(name_or_path))
    except Exception:  # noqa: BLE001 — a name that does not resolve is simply not a local VLM
        return False


def load_processor(name_or_path: str, *, fallback: str | None = None):
    """The AutoProcessor of a model folder (or of `fallback`, the base model, when the folder — an
    adapter — carries none); None when neither has an image processor."""
    from danlu.models.load import resolve_model_path
    from danlu.models.processor import load_processor as load

    for source in (name_or_path, fallback):
        if not source:
            continue
        path = Path(resolve_model_path(source)) if not Path(source).is_dir() else Path(source)
        if (path / "processor_config.json").is_file() or (path / "preprocessor_config.json").is_file():
            return load(path)
    return None


def has_images(conversation: list[dict]) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") in IMAGE_PART_TYPES for p in m["content"])
               for m in conversation)


def split_images(conversation: list[dict]) -> tuple[list[dict], list]:
    """(messages for the processor's chat template with bare {"type": "image"} parts, the images in
    order as RGB PIL images)."""
    messages, images = [], []
    for message in conversation:
        content = message.get("content")
        if not isinstance(content, list):
            messages.append(message)
            continue
        parts = []
        for part in content:
            if part.get("type") in IMAGE_PART_TYPES:
                images.append(as_image(part.get("image") or part.get("image_url")))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part.get("text", "")})
        messages.append({**message, "content": parts})
    return messages, images


def as_image(value):
    """A PIL image from a PIL image, a path, or an {"url": path} dict (RGB)."""
    from PIL import Image

    if isinstance(value, dict):
        value = value.get("url") or value.get("path")
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    with Image.open(Path(str(value)).expanduser()) as img:
        return img.convert("RGB")


def encode(processor, conversation: list[dict], *, add_generation_prompt: bool = True):
    """The processor's inputs (input_ids, attention_mask, pixel_values ...) for one conversation."""
    messages, images = split_images(conversation)
    text = processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    return processor(text=[text], images=images or None, return_tensors="pt")


def generate_ids(model, processor, conversation: list[dict], *, max_new_tokens: int, stop_token_ids,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, stopping=None,
                 streamer=None) -> tuple[list[int], int]:
    """(generated token ids, prompt tokens) for one conversation; the ids end at the first stop token
    (which is kept, so a caller can tell stop from length)."""
    import torch

    enc = encode(processor, conversation).to(model.device)
    if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
        enc["pixel_values"] = enc["pixel_values"].to(model.dtype)
    if seed is not None:
        torch.manual_seed(seed)
    tok = processor.tokenizer
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature if temperature > 0 else None,
                             top_p=top_p if temperature > 0 else None, top_k=None,
                             eos_token_id=list(stop_token_ids), pad_token_id=tok.pad_token_id,
                             stopping_criteria=stopping, streamer=streamer)
    width = enc["input_ids"].shape[1]
    new = out[0, width:].tolist()
    stop = next((k for k, t in enumerate(new) if t in set(stop_token_ids)), None)
    return (new[:stop + 1] if stop is not None else new), width


def generate(loaded, conversations: list[list[dict]], *, max_new_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, seed: int | None = None) -> list[dict]:
    """infer.generate.generate's answer shape for a VLM: one conversation at a time."""
    stops = set(loaded.stop_token_ids)
    out = []
    for conversation in conversations:
        ids, prompt = generate_ids(loaded.model, loaded.processor, conversation, max_new_tokens=max_new_tokens,
                                   stop_token_ids=loaded.stop_token_ids, temperature=temperature, top_p=top_p,
                                   seed=seed)
        stopped = bool(ids) and ids[-1] in stops
        text = loaded.processor.tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
        out.append({"text": text, "prompt_tokens": prompt, "completion_tokens": len(ids),
                    "finish_reason": "stop" if stopped else "length"})
    return out
