"""The builtin vision-language models: `builtin:tiny-vl` (Qwen2-VL-shaped), `builtin:tiny-llava`
(LLaVA-shaped: a tiny CLIP vision tower, a projector and a tiny Llama) and `builtin:tiny-gemma3`
(Gemma 3-shaped: a tiny SigLIP tower, pooled into 4 soft tokens per image) and `builtin:tiny-idefics3`
(Idefics3 / SmolVLM-shaped: a tiny SigLIP-style tower, pixel shuffle and one linear connector, a tiny
Llama; image splitting off, so one image is 4 `<image>` tokens between `<fake_token_around_image>`s), built offline from configs
with the builtin byte-level BPE tokenizer extended by each family's vision tokens, a processor
(Qwen2VLImageProcessorPil / CLIPImageProcessorPil / Idefics3ImageProcessorPil: no torchvision needed) and a ChatML chat
template that renders image content parts. Saved as ordinary Hugging Face folders, so
`AutoModelForImageTextToText.from_pretrained(dir)` and `AutoProcessor.from_pretrained(dir)` load them.

Sizes are chosen so 20 training steps take seconds on a CPU: images are 56×56 (tiny-vl: 16 patches
of 14 px merged 2×2 into 4 image tokens; tiny-llava: 16 patches → 16 image tokens; at 28 px
its 4 tokens were too coarse to learn the colour task in 20 steps)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VLM_VERSION = 1
QWEN2_VL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
LLAVA_TOKENS = ["<image>"]
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}

# ChatML whose content may be a string or a list of parts ({"type": "image"} / {"type": "text"});
# `image` is what an image part renders to (the family's placeholder, expanded by the processor).
_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}{{- IMAGE -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class VlmSpec:
    arch: str  # qwen2-vl | llava | gemma3 | idefics3
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    image_size: int = 56
    max_positions: int = 2048
    version: int = VLM_VERSION


VLM_SPECS: dict[str, VlmSpec] = {
    "tiny-vl": VlmSpec("qwen2-vl", 64, 2, 4, 2, 176, image_size=56),
    "tiny-llava": VlmSpec("llava", 64, 2, 4, 2, 176, image_size=56),
    "tiny-gemma3": VlmSpec("gemma3", 64, 2, 4, 2, 176, image_size=56),
    "tiny-idefics3": VlmSpec("idefics3", 64, 2, 4, 2, 176, image_size=56),
}


def chat_template(arch: str) -> str:
    image = {"qwen2-vl": "<|vision_start|><|image_pad|><|vision_end|>", "gemma3": "<start_of_image>"}.get(arch, "<image>")
    return _TEMPLATE.replace("IMAGE", repr(image))


def vlm_tokenizer(arch: str, bpe):
    """The builtin tokenizer (`bpe`: the trained byte-level BPE of builtin.py) with the family's
    vision tokens and a chat template that renders image parts."""
    from transformers import PreTrainedTokenizerFast

    extra = {"qwen2-vl": QWEN2_VL_TOKENS, "gemma3": list(GEMMA3_TOKENS.values()),
             "idefics3": IDEFICS3_TOKENS}.get(arch, LLAVA_TOKENS)
    named = {"extra_special_tokens": GEMMA3_TOKENS} if arch == "gemma3" else {}  # Gemma3Processor reads tok.boi_token ...
    tok = PreTrainedTokenizerFast(
        **named,
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", *extra],
        model_max_length=2048,
        padding_side="right",
    )
    tok.chat_template = chat_template(arch)
    return tok


def vlm_config(spec: VlmSpec, vocab: int, ids: dict[str, int]):
    """The model config of a spec; `ids` maps the special tokens to their ids."""
    text = dict(
        vocab_size=vocab, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        intermediate_size=spec.intermediate, max_position_embeddings=spec.max_positions,
        bos_token_id=None, eos_token_id=ids.get("<|im_end|>", 0), pad_token_id=ids.get("<|endoftext|>", 0),
        initializer_range=spec.hidden**-0.5, tie_word_embeddings=True,
    )
    if spec.arch == "qwen2-vl":
        from transformers import Qwen2VLConfig

        half = spec.hidden // spec.heads // 2  # mrope sections (t, h, w) add up to head_dim / 2
        text["rope_scaling"] = {"type": "mrope", "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]}
        text["rope_theta"] = 10000.0
        vision = dict(depth=spec.vision_layers, embed_dim=spec.vision_hidden, hidden_size=spec.hidden,
                      num_heads=spec.vision_heads, mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, in_channels=3, initializer_range=spec.vision_hidden**-0.5)
        return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                             image_token_id=ids.get("<|image_pad|>", 0), video_token_id=ids.get("<|video_pad|>", 0),
                             vision_start_token_id=ids.get("<|vision_start|>", 0),
                             vision_end_token_id=ids.get("<|vision_end|>", 0))
    if spec.arch == "gemma3":
        return _gemma3_config(spec, text, ids)
    if spec.arch == "idefics3":
        return _idefics3_config(spec, text, ids)
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                              num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                              image_size=spec.image_size, patch_size=14, projection_dim=spec.vision_hidden,
                              initializer_range=spec.vision_hidden**-0.5)
    return LlavaConfig(vision_config=vision, text_config=LlamaConfig(**text), image_token_id=ids.get("<image>", 0),
                       vision_feature_layer=-1, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu", image_seq_length=(spec.image_size // 14) ** 2,
                       tie_word_embeddings=True)


def _gemma3_config(spec: VlmSpec, text: dict, ids: dict[str, int]):
    from transformers import Gemma3Config

    text = {**text, "head_dim": spec.hidden // spec.heads, "sliding_window": 512, "rope_theta": 10000.0}
    vision = dict(hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                  num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                  image_size=spec.image_size, patch_size=14)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                        boi_token_index=ids.get(GEMMA3_TOKENS["boi_token"], 0),
                        eoi_token_index=ids.get(GEMMA3_TOKENS["eoi_token"], 0),
                        image_token_index=ids.get(GEMMA3_TOKENS["image_token"], 0),
                        initializer_range=spec.hidden**-0.5, tie_word_embeddings=True)


def _idefics3_config(spec: VlmSpec, text: dict, ids: dict[str, int]):
    """Idefics3 (SmolVLM's architecture): 56 px / 14 px patches = 16, pixel-shuffled by 2 into 4 tokens."""
    from transformers import Idefics3Config

    vision = dict(hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                  num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                  image_size=spec.image_size, patch_size=14, initializer_range=spec.vision_hidden**-0.5)
    return Idefics3Config(text_config=text, vision_config=vision, scale_factor=2, tie_word_embeddings=True,
                          image_token_id=ids.get("<image>", 0), pad_token_id=text["pad_token_id"])


def vlm_processor(spec: VlmSpec, tok):
    if spec.arch == "qwen2-vl":
        from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

        from danlu.models.processor import image_only

        pixels = spec.image_size * spec.image_size
        images = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels},
                                          patch_size=14, merge_size=2, temporal_patch_size=2)
        return image_only(Qwen2VLProcessor)(image_processor=images, tokenizer=tok, chat_template=tok.chat_template)
    if spec.arch == "gemma3":
        from transformers import Gemma3ImageProcessorPil, Gemma3Processor

        images = Gemma3ImageProcessorPil(size={"height": spec.image_size, "width": spec.image_size})
        return Gemma3Processor(image_processor=images, tokenizer=tok, chat_template=tok.chat_template,
                               image_seq_length=4)
    if spec.arch == "idefics3":
        from transformers import Idefics3ImageProcessorPil, Idefics3Processor

        side = {"longest_edge": spec.image_size}
        images = Idefics3ImageProcessorPil(size=side, max_image_size=side, do_image_splitting=False)
        return Idefics3Processor(image_processor=images, tokenizer=tok, chat_template=tok.chat_template,
                                 image_seq_len=(spec.image_size // 14 // 2) ** 2)
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    images = CLIPImageProcessorPil(size={"shortest_edge": spec.image_size},
                                   crop_size={"height": spec.image_size, "width": spec.image_size})
    return LlavaProcessor(image_processor=images, tokenizer=tok, chat_template=tok.chat_template, patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          image_token="<image>")


def build_vlm(spec: VlmSpec, out: Path, bpe) -> None:
    """Build and save model, tokenizer, processor and generation config of a spec into `out`."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    tok = vlm_tokenizer(spec.arch, bpe)
    ids = {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens}
    config = vlm_config(spec, (len(tok) + 63) // 64 * 64, ids)
    state = torch.random.get_rng_state()
    torch.manual_seed(20250417)
    try:
        model = AutoModelForImageTextToText.from_config(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(str(out), safe_serialization=True)
    from danlu.models.processor import save_processor

    save_processor(vlm_processor(spec, tok), out)
    eos = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(str(out))
