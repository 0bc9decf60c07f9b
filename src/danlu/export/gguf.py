"""`danlu export RUN --gguf [--gguf-type f16|q8_0|q4_k_m|q5_k_m|q6_k]`: a GGUF file for llama.cpp and
Ollama, written with the `gguf` package (its tensor-name maps, writer, reader and Q8_0 quantiser).
The k-quants (q4_k_m, q5_k_m, q6_k) go through llama.cpp's own quantiser (llama-cpp-python's
`llama_model_quantize`, the `llamacpp` extra) from the f16 file danlu writes; it applies llama.cpp's
per-tensor rules: the _M mixes keep some tensors at a higher type, and a tensor whose rows are not a
multiple of 256 falls back to a 32-block type (q5_0 / q5_1 / q8_0), or F16 when not a multiple of 32.

Covered: Llama, Mistral (llama.cpp's "llama" architecture, whose q/k weights are permuted to
llama.cpp's interleaved RoPE layout) and Qwen2 (NeoX RoPE, no permutation), with a byte-level
BPE tokenizer (GPT-2, Qwen2 and Llama-3 pre-tokenizers). The chat template the run trained with
is embedded as tokenizer.chat_template, and the EOS / EOT id is the template's turn-end token, so
llama.cpp stops where the fine-tune learned to stop. Anything else is refused with a pointer to
llama.cpp's own convert_hf_to_gguf.py, run on the `--merge` output.

`read_back` reads the file with gguf's reader; `dequantized_state_dict` turns it back into
transformers weights, so the in-process logit error of each type is measured without llama.cpp
(`make test-gguf` checks llama.cpp itself)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import UserError

log = logging.getLogger(__name__)

GGUF_TYPES = ("f16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
# the types made by llama.cpp's quantiser → its LLAMA_FTYPE_* constant
LLAMA_CPP_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                   "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
LLAMA_CPP_HINT = "pip install 'danlu[llamacpp]' (llama-cpp-python), or choose --gguf-type f16 or q8_0"
CONVERTER_HINT = ("export the merged model with --merge, then convert it with llama.cpp's convert_hf_to_gguf.py "
                  "(https://github.com/ggml-org/llama.cpp)")
# HF architecture → (gguf architecture, q/k need llama.cpp's RoPE permutation)
ARCHS = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}
# the Split regex of a byte-level BPE tokenizer → llama.cpp's pre-tokenizer name
PRE_TOKENIZERS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+": "qwen2",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+": "llama-bpe",
}


@dataclass
class Layout:
    """How the model maps onto GGUF."""

    arch: str
    permute: bool
    n_head: int
    n_kv_head: int
    head_dim: int


def layout_of(config) -> Layout:
    names = getattr(config, "architectures", None) or []
    name = next((a for a in names if a in ARCHS), None)
    if name is None:
        raise UserError(f"danlu writes GGUF for {', '.join(ARCHS)}; this model is {', '.join(names) or '?'}",
                        where="--gguf", hint=CONVERTER_HINT)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise UserError(f"this model uses {rope.get('rope_type') or rope.get('type')} RoPE scaling, which danlu's "
                        "GGUF writer does not cover", where="--gguf", hint=CONVERTER_HINT)
    arch, permute = ARCHS[name]
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return Layout(arch, permute, n_head, getattr(config, "num_key_value_heads", None) or n_head, head_dim)


def rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)


def permute(w, n_head: int):
    """HF's rotate-half q/k rows → llama.cpp's interleaved pairs (as convert_hf_to_gguf.py)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head: int):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def pre_tokenizer(tok_json: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; refuses what it cannot name."""
    model = tok_json.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tok_json.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserError("danlu writes GGUF for byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3); this one is "
                        f"{model.get('type')} with byte_fallback={model.get('byte_fallback')}",
                        where="--gguf", hint=CONVERTER_HINT)
    pre = tok_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    for part in parts:
        regex = (part.get("pattern") or {}).get("Regex") if part.get("type") == "Split" else None
        if regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
    raise UserError("the tokenizer's pre-tokenizer is not one danlu can name for llama.cpp "
                    f"({json.dumps(pre)[:200]})", where="--gguf", hint=CONVERTER_HINT)


def vocab(tokenizer, n_vocab: int) -> tuple[list[str], list[int], list[str], str]:
    """(tokens, token types, merges, pre-tokenizer) for ids 0..n_vocab-1; the model's padded
    rows beyond the tokenizer get unused [PADn] tokens, as in convert_hf_to_gguf.py."""
    from gguf import TokenType

    tok_json = json.loads(tokenizer.backend_tokenizer.to_str())
    pre = pre_tokenizer(tok_json)
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(n_vocab):
        text = tokenizer.convert_ids_to_tokens(i) if i < len(tokenizer) else None
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif text in added:
            tokens.append(text)
            types.append(TokenType.CONTROL if added[text].special else TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(TokenType.NORMAL)
    merges = tok_json["model"].get("merges", [])
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return tokens, [int(t) for t in types], merges, pre


def gguf_tensors(state: dict, config, layout: Layout, kind: str):
    """(gguf name, numpy data, raw dtype or None, hf name) for every weight."""
    import numpy as np
    from gguf import GGMLQuantizationType, MODEL_ARCH, get_tensor_name_map, quants

    arch = {"llama": MODEL_ARCH.LLAMA, "qwen2": MODEL_ARCH.QWEN2}[layout.arch]
    names = get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise UserError(f"no GGUF name for weight {hf_name!r}", where="--gguf", hint=CONVERTER_HINT)
        data = tensor.detach().float().cpu().numpy()
        if layout.permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, layout.n_head)
        elif layout.permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, layout.n_kv_head)
        if data.ndim == 1:
            yield new, data.astype(np.float32), None, hf_name  # norms and biases stay F32
        elif kind == "q8_0" and data.shape[-1] % 32 == 0:
            yield new, quants.quantize(data, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0, hf_name
        else:
            yield new, data.astype(np.float16), None, hf_name


def write_gguf(model, tokenizer, trained, path: Path, kind: str, name: str) -> dict[str, str]:
    """Write the GGUF file; returns the gguf name → hf name map of the tensors written."""
    import gguf

    if kind not in GGUF_TYPES:
        raise UserError(f"unknown GGUF type {kind!r}", where="--gguf-type", hint="choose " + ", ".join(GGUF_TYPES))
    if kind in LLAMA_CPP_TYPES:
        require_llama_cpp(kind)
        f16 = path.with_name(path.name + ".f16.tmp")
        try:
            mapping = write_gguf(model, tokenizer, trained, f16, "f16", name)
            quantize_with_llama_cpp(f16, path, kind)
        finally:
            f16.unlink(missing_ok=True)
        return mapping
    config = model.config
    layout = layout_of(config)
    tokens, types, merges, pre = vocab(tokenizer, config.vocab_size)
    w = gguf.GGUFWriter(str(path), layout.arch)
    w.add_name(name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(layout.n_head)
    w.add_head_count_kv(layout.n_kv_head)
    w.add_rope_dimension_count(layout.head_dim)
    w.add_rope_freq_base(rope_theta(config))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(w, tokenizer, trained, tokens, types, merges, pre)
    mapping = {}
    for new, data, raw, hf_name in gguf_tensors(model.state_dict(), config, layout, kind):
        w.add_tensor(new, data, raw_dtype=raw)
        mapping[new] = hf_name
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return mapping


def require_llama_cpp(kind: str) -> None:
    """llama-cpp-python is needed for the k-quants; without it, a clear UserError (exit 2)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise UserError(f"--gguf-type {kind} is made by llama.cpp's quantiser, and llama-cpp-python is not "
                        "installed", where="--gguf-type", hint=LLAMA_CPP_HINT) from None


def quantize_with_llama_cpp(src: Path, dst: Path, kind: str) -> None:
    """llama.cpp's quantiser (as the llama-quantize tool) from an f16 GGUF file to `kind`."""
    import os

    import llama_cpp

    from danlu.errors import DanluError

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_CPP_TYPES[kind])
    params.nthread = max(1, min(4, os.cpu_count() or 1))
    log.info("quantising %s to %s with llama.cpp", src.name, kind)
    chatter = logging.getLogger("llama-cpp-python")  # llama.cpp's per-tensor lines (its log callback)
    level = chatter.level
    chatter.setLevel(max(level, logging.ERROR))
    try:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    finally:
        chatter.setLevel(level)
    if status != 0 or not dst.exists():
        raise DanluError(f"llama.cpp's quantiser failed ({status}) turning {src.name} into {kind}; see the log above")


def _add_tokenizer(w, tokenizer, trained, tokens, types, merges, pre) -> None:
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(trained.turn_end_id)  # the token that ends an answer, not the base's <|endoftext|>
    w.add_eot_token_id(trained.turn_end_id)
    if tokenizer.bos_token_id is not None:
        w.add_bos_token_id(tokenizer.bos_token_id)
    if tokenizer.pad_token_id is not None:
        w.add_pad_token_id(tokenizer.pad_token_id)
    # the chat template writes the BOS itself when it wants one; llama.cpp must not add another
    w.add_add_bos_token(False)
    if trained.template is not None:
        w.add_chat_template(trained.template)


def read_back(path: Path) -> tuple[dict, dict]:
    """(metadata fields, tensors name → (shape in torch order, ggml type name)) read by gguf's reader."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        fields[key] = field.contents()
    tensors = {t.name: (tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name) for t in reader.tensors}
    return fields, tensors


def dequantized_state_dict(path: Path, mapping: dict[str, str], config) -> dict:
    """The file's tensors back as fp32 HF weights (un-permuted), for the logit comparison."""
    import numpy as np
    import torch
    from gguf import GGUFReader, quants

    layout = layout_of(config)
    state = {}
    for t in GGUFReader(str(path)).tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        data = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        hf_name = mapping[t.name]
        if layout.permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = unpermute(data, layout.n_head)
        elif layout.permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = unpermute(data, layout.n_kv_head)
        state[hf_name] = torch.from_numpy(data.copy())
    return state


def verify(path: Path, model, tokenizer, trained, mapping: dict[str, str], kind: str) -> dict:
    """Read the file back: every tensor present with its shape and type, metadata and vocab as written."""
    from danlu.errors import DanluError

    fields, tensors = read_back(path)
    state = model.state_dict()
    problems = []
    for new, hf_name in mapping.items():
        if new not in tensors:
            problems.append(f"tensor {new} missing")
        elif tensors[new][0] != tuple(state[hf_name].shape):
            problems.append(f"tensor {new}: shape {tensors[new][0]} != {tuple(state[hf_name].shape)}")
    if set(tensors) - set(mapping):
        problems.append(f"unexpected tensors {sorted(set(tensors) - set(mapping))}")
    arch = fields.get("general.architecture")
    if fields.get(f"{arch}.block_count") != model.config.num_hidden_layers:
        problems.append(f"{arch}.block_count is {fields.get(f'{arch}.block_count')}")
    if fields.get("tokenizer.ggml.tokens") != vocab(tokenizer, model.config.vocab_size)[0]:
        problems.append("tokenizer.ggml.tokens differ from the tokenizer's vocabulary")
    if problems:
        raise DanluError(f"the GGUF file {path} does not read back as written: " + "; ".join(problems[:5]))
    types = sorted({t for _, t in tensors.values()})
    return {"fields": fields, "tensors": len(tensors), "tensor_types": types}
