"""A model's shape — what the planner needs to count parameters, activations and FLOPs — read
from its config.json (a local directory, the Hugging Face cache, a `builtin:*` model) or from
the bundled table of popular architectures (`architectures.yaml`). No weights are read or
downloaded, and transformers is not imported.

Parameter counts follow the transformers module layout of each family exactly (tested against
the models instantiated on the meta device): decoders (llama, mistral, qwen2, qwen3, gemma,
gemma2, gemma3_text, glm, glm4, phi3, phi) and the BERT encoder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from danlu.errors import UserError
from danlu.plan.vision import VisionShape, vision_from_config

TABLE = Path(__file__).with_name("architectures.yaml")


@dataclass(frozen=True)
class Family:
    """How a model type lays out one block (the differences that change parameter counts)."""

    qkv_bias: bool | str = False  # True, False, or the config key that says ("attention_bias")
    o_bias: bool | str = False
    mlp: str = "gated"  # gated (gate, up, down) | gated_fused (gate_up_proj, down) | plain (fc1, fc2)
    mlp_bias: bool = False
    qkv_fused: bool = False  # phi3: one qkv_proj
    qk_norm: bool = False  # qwen3, gemma3: RMSNorm over head_dim on q and k
    norms: int = 2  # norms per block
    norm_bias: bool = False  # LayerNorm (weight + bias) instead of RMSNorm
    lm_head_bias: bool = False
    tie_default: bool = False
    encoder: bool = False  # BERT: absolute positions, token types, pooler


FAMILIES: dict[str, Family] = {
    "llama": Family(qkv_bias="attention_bias", o_bias="attention_bias"),
    "mistral": Family(),
    "qwen2": Family(qkv_bias=True),
    "qwen3": Family(qkv_bias="attention_bias", o_bias="attention_bias", qk_norm=True),
    "gemma": Family(qkv_bias="attention_bias", o_bias="attention_bias", tie_default=True),
    "gemma2": Family(qkv_bias="attention_bias", o_bias="attention_bias", norms=4, tie_default=True),
    "gemma3_text": Family(qkv_bias="attention_bias", o_bias="attention_bias", norms=4, qk_norm=True,
                          tie_default=True),
    "glm": Family(qkv_bias="attention_bias", mlp="gated_fused"),
    "glm4": Family(qkv_bias="attention_bias", mlp="gated_fused", norms=4),
    "phi3": Family(qkv_fused=True, mlp="gated_fused"),
    "phi": Family(qkv_bias=True, o_bias=True, mlp="plain", mlp_bias=True, norms=1, norm_bias=True,
                  lm_head_bias=True),
    "bert": Family(qkv_bias=True, o_bias=True, mlp="plain", mlp_bias=True, norm_bias=True, encoder=True),
    # image and speech models, read roughly through plan/media_arch.py
    "vit": Family(qkv_bias=True, o_bias=True, mlp="plain", mlp_bias=True, norm_bias=True, encoder=True),
    "whisper": Family(qkv_bias=True, o_bias=True, mlp="plain", mlp_bias=True, norm_bias=True, tie_default=True),
}
DEFAULT_ATTENTION_BIAS = {"glm": True, "glm4": True}
# the text towers of vision-language models, laid out as these text families
FAMILIES.update({"qwen2_vl_text": FAMILIES["qwen2"], "qwen2_5_vl_text": FAMILIES["qwen2"]})


@dataclass(frozen=True)
class Linear:
    """One linear module of a block: name (as PEFT's target_modules see it), shape, bias."""

    name: str
    d_in: int
    d_out: int
    bias: bool = False
    kind: str = "attn"  # attn | mlp

    @property
    def params(self) -> int:
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)


@dataclass(frozen=True)
class Arch:
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    attention_bias: bool = False
    max_positions: int = 4096
    type_vocab: int = 2  # BERT token types
    name: str = ""
    source: str = ""  # where the shape came from (file path, cache, bundled table)
    checkpoint_dtype: str = ""  # config.json's dtype (torch_dtype): how the weights files store them
    family: Family = field(default_factory=Family, compare=False)
    vision: VisionShape | None = field(default=None, compare=False)  # a vision-language model's image side

    # ---- shape ------------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_encoder(self) -> bool:
        return self.family.encoder

    def _bias(self, which: bool | str) -> bool:
        return self.attention_bias if isinstance(which, str) else which

    def block_linears(self) -> list[Linear]:
        """The linear modules of one block, in forward order."""
        f, h, i = self.family, self.hidden, self.intermediate
        qb, ob = self._bias(f.qkv_bias), self._bias(f.o_bias)
        if f.encoder:
            attn = [Linear("query", h, h, True), Linear("key", h, h, True), Linear("value", h, h, True),
                    Linear("dense", h, h, True)]
            return attn + [Linear("intermediate.dense", h, i, True, "mlp"), Linear("output.dense", i, h, True, "mlp")]
        if f.qkv_fused:
            attn = [Linear("qkv_proj", h, self.q_dim + 2 * self.kv_dim, qb)]
        else:
            attn = [Linear("q_proj", h, self.q_dim, qb), Linear("k_proj", h, self.kv_dim, qb),
                    Linear("v_proj", h, self.kv_dim, qb)]
        attn.append(Linear("dense" if f.mlp == "plain" else "o_proj", self.q_dim, h, ob))
        mlp = {
            "gated": [Linear("gate_proj", h, i, f.mlp_bias, "mlp"), Linear("up_proj", h, i, f.mlp_bias, "mlp"),
                      Linear("down_proj", i, h, f.mlp_bias, "mlp")],
            "gated_fused": [Linear("gate_up_proj", h, 2 * i, f.mlp_bias, "mlp"),
                            Linear("down_proj", i, h, f.mlp_bias, "mlp")],
            "plain": [Linear("fc1", h, i, f.mlp_bias, "mlp"), Linear("fc2", i, h, f.mlp_bias, "mlp")],
        }[f.mlp]
        return attn + mlp

    # ---- parameter counts -------------------------------------------------------------------
    def norm_params(self, dim: int) -> int:
        return dim * (2 if self.family.norm_bias else 1)

    def block_params(self) -> int:
        f = self.family
        n = sum(lin.params for lin in self.block_linears())
        n += f.norms * self.norm_params(self.hidden)
        if f.qk_norm:
            n += 2 * self.head_dim
        return n

    def embedding_params(self) -> int:
        n = self.vocab * self.hidden
        if self.family.encoder:  # positions, token types, LayerNorm
            n += (self.max_positions + self.type_vocab) * self.hidden + self.norm_params(self.hidden)
        return n

    def head_params(self) -> int:
        """The output layer: lm_head (decoders; 0 extra when tied), pooler (BERT)."""
        if self.family.encoder:
            return self.hidden * self.hidden + self.hidden  # pooler.dense
        if self.tie_embeddings:
            return self.vocab if self.family.lm_head_bias else 0
        return self.vocab * self.hidden + (self.vocab if self.family.lm_head_bias else 0)

    def final_norm_params(self) -> int:
        return 0 if self.family.encoder else self.norm_params(self.hidden)

    @property
    def n_params(self) -> int:
        return (self.embedding_params() + self.layers * self.block_params() + self.final_norm_params()
                + self.head_params() + (self.vision.params if self.vision else 0))

    @property
    def linear_params(self) -> int:
        """Parameters in the blocks' linear weights (what 4/8-bit quantisation stores packed)."""
        return self.layers * sum(lin.d_in * lin.d_out for lin in self.block_linears())

    @property
    def lm_head_matrix(self) -> int:
        """Elements of the output projection matrix (shared with the embedding when tied)."""
        return 0 if self.family.encoder else self.vocab * self.hidden

    def bias_params(self) -> int:
        """Bias vectors (what BitFit trains)."""
        f = self.family
        n = self.layers * sum(lin.d_out for lin in self.block_linears() if lin.bias)
        if f.norm_bias:
            norms = self.layers * f.norms + (0 if f.encoder else 1) + (1 if f.encoder else 0)
            n += norms * self.hidden
        if f.lm_head_bias:
            n += self.vocab
        if f.encoder:
            n += self.hidden  # pooler bias
        return n

    def describe(self) -> str:
        tied = ", tied embeddings" if self.tie_embeddings and not self.is_encoder else ""
        return (f"{self.model_type}: {self.layers} layers, hidden {self.hidden}, {self.heads} heads "
                f"({self.kv_heads} kv, dim {self.head_dim}), ffn {self.intermediate}, vocab {self.vocab}{tied}; "
                f"{self.n_params / 1e9:.3g}B parameters" + (f"; {self.vision.describe()}" if self.vision else ""))


# ---- reading a config -------------------------------------------------------------------------
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


def arch_from_config(cfg: dict, *, name: str = "", source: str = "") -> Arch:
    """An Arch from the fields of a Hugging Face config.json (a vision-language model: its text
    tower, with the image side in `vision`)."""
    vision = vision_from_config(cfg, _processor_config(source))
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrapper: the text tower
        cfg = {**cfg["text_config"], "tie_word_embeddings": cfg.get("tie_word_embeddings",
                                                                    cfg["text_config"].get("tie_word_embeddings"))}
    from danlu.plan.media_arch import as_text_config

    cfg = as_text_config(cfg)
    model_type = str(cfg.get("model_type", ""))
    if model_type == "gemma3":
        model_type = "gemma3_text"
    where = source or name or "config.json"
    if any(cfg.get(k) for k in MOE_KEYS):
        raise UserError(f"{name or model_type} is a mixture-of-experts model; danlu plan does not model MoE yet",
                        where=where, hint="plan a dense model of similar active size, or measure with a short run")
    family = FAMILIES.get(model_type)
    if family is None:
        raise UserError(f"danlu plan does not know the layout of model_type {model_type!r}", where=where,
                        hint="known: " + ", ".join(sorted(FAMILIES)))
    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        tie = cfg.get("tie_word_embeddings")
        return Arch(
            model_type=model_type, hidden=hidden, layers=int(cfg["num_hidden_layers"]), heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            intermediate=int(cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]),
            tie_embeddings=family.tie_default if tie is None else bool(tie),
            attention_bias=bool(cfg.get("attention_bias", DEFAULT_ATTENTION_BIAS.get(model_type, False))),
            max_positions=int(cfg.get("max_position_embeddings") or 4096),
            type_vocab=int(cfg.get("type_vocab_size") or 2), name=name, source=source, family=family,
            checkpoint_dtype=str(cfg.get("dtype") or cfg.get("torch_dtype") or ""),
            vision=vision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"config of {name or model_type} lacks or mangles {exc}", where=where) from None


# ---- finding a config -------------------------------------------------------------------------
def _normalise(name: str) -> str:
    """'Qwen/Qwen2.5-7B-Instruct' → 'qwen2.5-7b': the repo name, lower case, without chat suffixes."""
    base = name.strip().rstrip("/").split("/")[-1].lower()
    return re.sub(r"(-(instruct|chat|it|hf|base|pt))+$", "", base)


@lru_cache(maxsize=1)
def bundled_table() -> dict[str, dict]:
    """Repo name → config fields, with every alias as a key too."""
    data = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    out: dict[str, dict] = {}
    for hub_id, entry in data.items():
        entry = dict(entry)
        aliases = entry.pop("aliases", [])
        entry["_hub_id"] = hub_id
        for key in (hub_id, *aliases):
            out[_normalise(key)] = entry
    return out


def _hub_cache_config(repo_id: str) -> str | None:
    """config.json of a hub model already in the Hugging Face cache (never downloads)."""
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 — an odd id is simply "not cached"
        return None
    return found if isinstance(found, str) else None


def resolve_arch(name_or_path: str) -> Arch:
    """The shape of `name_or_path`: builtin:*, a local directory, the hub cache, or the bundled table."""
    from danlu.models.builtin import builtin_path, is_builtin
    from danlu.models.gguf import is_gguf_source
    from danlu.models.load import resolve_model_path
    from danlu.models.packaged import is_packaged

    if is_builtin(name_or_path):
        path = builtin_path(name_or_path) / "config.json"
        return arch_from_config(_read(path), name=name_or_path, source=str(path))
    if is_packaged(name_or_path) or is_gguf_source(name_or_path):
        path = Path(resolve_model_path(name_or_path)) / "config.json"  # the dequantised copy's config
        return arch_from_config(_read(path), name=name_or_path, source=str(path))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        path = local / "config.json"
        if not path.exists():
            raise UserError(f"{local} has no config.json", where="model.name_or_path",
                            hint="give a Hugging Face model directory, a hub id, or builtin:tiny")
        return arch_from_config(_read(path), name=name_or_path, source=str(path))
    cached = _hub_cache_config(name_or_path)
    if cached:
        return arch_from_config(_read(Path(cached)), name=name_or_path, source=f"hub cache: {cached}")
    entry = bundled_table().get(_normalise(name_or_path))
    if entry is None:
        raise UserError(
            f"no config.json for {name_or_path!r}: not a local directory, not in the Hugging Face cache, "
            "and not in danlu's table of popular architectures",
            where="model.name_or_path",
            hint="download only its config.json (huggingface-cli download REPO config.json), or pass a local "
                 "directory; `danlu plan --list-models` shows the bundled table",
        )
    fields = {k: v for k, v in entry.items() if not k.startswith("_")}
    return arch_from_config(fields, name=name_or_path, source=f"bundled table ({entry['_hub_id']})")


def bundled_names() -> list[str]:
    data = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    return list(data)


def _processor_config(source: str) -> dict | None:
    """preprocessor_config.json beside a config.json (image size decides a Qwen2-VL's image tokens)."""
    p = Path(source).with_name("preprocessor_config.json") if source.endswith("config.json") else None
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p and p.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}", where=str(path)) from None
