"""The image side of a vision-language model for `danlu plan`: the vision tower's and projector's
parameters, and how many patches (tower tokens) and image tokens (language-model tokens) one
image makes — read from config.json's `vision_config` (and preprocessor_config.json when beside
it). Families: Qwen2-VL / Qwen2.5-VL (merger after the tower), LLaVA, Idefics3 / SmolVLM
(pixel shuffle + one linear), Gemma 3 (SigLIP + pooled projector); others are planned with a
generic ViT + two-linear projector and a note.

Counts are estimates of the module layout (blocks: qkv + out + MLP + 2 norms; patch embedding;
position embeddings), checked against the builtin VLMs instantiated on the meta device."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_IMAGE = 448  # pixels a side, when no processor config says (a common VLM input size)


@dataclass(frozen=True)
class VisionShape:
    family: str
    hidden: int  # vision tower width
    layers: int
    intermediate: int
    patches: int  # tower tokens per image
    image_tokens: int  # language-model tokens per image (after merging / pooling)
    tower_params: int
    projector_params: int

    @property
    def params(self) -> int:
        return self.tower_params + self.projector_params

    def forward_flops(self) -> float:
        """Forward FLOPs of the tower for one image (2 × params × patches, plus attention)."""
        return 2.0 * self.tower_params * self.patches + 4.0 * self.layers * self.patches ** 2 * self.hidden

    def describe(self) -> str:
        return (f"vision tower {self.family}: {self.layers} layers, hidden {self.hidden}, {self.tower_params:,} params; "
                f"projector {self.projector_params:,} params; {self.image_tokens} image tokens per image "
                f"({self.patches} patches)")


def _block(h: int, inter: int, *, glu: bool = False) -> int:
    attn = 4 * h * h + 4 * h  # q, k, v, o with biases
    mlp = (3 if glu else 2) * h * inter + inter + h
    return attn + mlp + 4 * h  # two LayerNorms


def vision_from_config(cfg: dict, processor: dict | None = None) -> VisionShape | None:
    """The VisionShape of a config.json dict, or None for a text model."""
    v = cfg.get("vision_config")
    if not isinstance(v, dict):
        return None
    text = cfg.get("text_config") or {}
    d_text = int(text.get("hidden_size") or cfg.get("hidden_size") or 0)
    mtype = str(cfg.get("model_type", ""))
    processor = processor or {}
    if mtype in ("qwen2_vl", "qwen2_5_vl"):
        return _qwen2_vl(v, d_text, processor, mtype)
    h = int(v.get("hidden_size") or v.get("embed_dim") or 0)
    layers = int(v.get("num_hidden_layers") or v.get("depth") or 0)
    inter = int(v.get("intermediate_size") or 4 * h)
    patch = int(v.get("patch_size") or 14)
    side = int(v.get("image_size") or DEFAULT_IMAGE)
    patches = (side // patch) ** 2
    tower = layers * _block(h, inter) + 3 * patch * patch * h + h + patches * h + 2 * h  # + post LayerNorm
    if mtype == "llava":
        tower += h + 2 * h  # CLS embedding, pre-LayerNorm (CLIP)
        strategy = cfg.get("vision_feature_select_strategy", "default")
        image_tokens = patches if strategy == "default" else patches + 1
        proj = h * d_text + d_text + d_text * d_text + d_text
        family = "llava (CLIP)"
    elif mtype in ("idefics3", "smolvlm"):
        factor = int(cfg.get("scale_factor") or 2)
        image_tokens = patches // (factor * factor)
        proj = h * factor * factor * d_text
        family = mtype
    elif mtype == "gemma3":
        if v.get("vision_use_head", True):  # SigLIP's attention-pooling head (probe, attention, norm, MLP)
            tower += h + 4 * h * h + 4 * h + 2 * h + 2 * h * inter + inter + h
        image_tokens = int(cfg.get("mm_tokens_per_image") or 256)
        proj = h * d_text + h  # projection matrix + soft-emb RMSNorm
        family = "gemma3 (SigLIP)"
    else:
        image_tokens, proj, family = patches, h * d_text + d_text * d_text + 2 * d_text, f"{mtype} (generic ViT)"
    return VisionShape(family, h, layers, inter, patches, image_tokens, tower, proj)


def _qwen2_vl(v: dict, d_text: int, processor: dict, mtype: str) -> VisionShape:
    h = int(v.get("embed_dim") or v.get("hidden_size") or 0)
    layers = int(v.get("depth") or 0)
    ratio = float(v.get("mlp_ratio") or 4)
    inter = int(v.get("intermediate_size") or h * ratio)
    patch, merge, temporal = int(v.get("patch_size") or 14), int(v.get("spatial_merge_size") or 2), \
        int(v.get("temporal_patch_size") or 2)
    size = processor.get("size") or {}
    pixels = int(size.get("longest_edge") or processor.get("max_pixels") or DEFAULT_IMAGE * DEFAULT_IMAGE)
    patches = pixels // (patch * patch)
    out = int(v.get("hidden_size") or d_text) if mtype == "qwen2_vl" else int(v.get("out_hidden_size") or d_text)
    tower = layers * (4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h) + 3 * temporal * patch * patch * h
    merged = h * merge * merge
    proj = h * 2 + merged * merged + merged + merged * out + out  # ln_q + 2-layer MLP
    return VisionShape(mtype, h, layers, inter, patches, patches // (merge * merge), tower, proj)


def frozen_vision_params(vision: VisionShape, method) -> int:
    """Parameters of the image side that method.freeze_vision_tower / freeze_projector keep frozen."""
    tower = getattr(method, "freeze_vision_tower", True) if not isinstance(method, dict) \
        else method.get("freeze_vision_tower", True)
    proj = getattr(method, "freeze_projector", True) if not isinstance(method, dict) \
        else method.get("freeze_projector", True)
    return (vision.tower_params if tower else 0) + (vision.projector_params if proj else 0)


def tower_trains(method) -> bool:
    value = method.get("freeze_vision_tower", True) if isinstance(method, dict) \
        else getattr(method, "freeze_vision_tower", True)
    return not value


def vision_activation_bytes(vision: VisionShape, images: int, act_bytes: int, trains: bool) -> float:
    """Bytes the tower leaves alive for one micro-batch of `images` images: every block's saved
    tensors when it trains (~16 hidden-wide tensors per patch per block, 2 attention maps per head
    group ignored at these patch counts), else only its output features."""
    per_patch = vision.hidden * act_bytes * (16 * vision.layers if trains else 1)
    return images * vision.patches * per_patch


def vision_flops(vision: VisionShape, trains: bool) -> float:
    """Training FLOPs of the tower for one image: forward, plus backward when it trains."""
    return vision.forward_flops() * (3 if trains else 1)
