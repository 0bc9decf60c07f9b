"""Load tokenizers and models from a hub id, a local directory or `builtin:*`.

Safe by default: weights are read from safetensors only (a pickle `.bin` is refused), and a
model's own Python code runs only with `model.trust_remote_code: true`."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from danlu.errors import UnsafeFileError, UserError
from danlu.models.builtin import builtin_path, is_builtin
from danlu.models.gguf import converted_path, is_gguf_source
from danlu.models.packaged import is_packaged, packaged_path
from danlu.models.saved_tokenizer import follow_saved_file

log = logging.getLogger(__name__)


def resolve_model_path(name_or_path: str, *, need: str = "config.json") -> str:
    """builtin:* → its cached directory; pkg:* or a .gguf file (or a folder holding one) → its
    dequantised copy in danlu's cache; a local directory → itself; otherwise a hub id."""
    if is_builtin(name_or_path):
        return str(builtin_path(name_or_path))
    if is_packaged(name_or_path):
        return str(packaged_path(name_or_path))
    if is_gguf_source(name_or_path):
        return str(converted_path(name_or_path))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / need).exists():
            raise UserError(
                f"{p} is not a model directory (no config.json)",
                where="model.name_or_path",
                hint="give a Hugging Face model directory, a .gguf file, a hub id, pkg:smollm2-135m-instruct "
                     "or builtin:tiny (`danlu models` lists the named ones). To build on a danlu run, give its "
                     "base here and the run as model.adapter (or the finished run itself); to make a run a "
                     "standalone model: danlu export RUN --merge -o DIR, then give DIR",
            )
        return str(p)
    return name_or_path


def hub_kwargs(path: str, need: str = "config.json", revision: str | None = None) -> dict:
    """from_pretrained kwargs for where the files come from. A local directory: none. A hub id
    while the hub answers: none (download, or refresh the cache). A hub id while it does not:
    the cached copy (`local_files_only`, no minutes of retries), or a UserError at once when
    there is no cached copy — not a wall of retry messages and then a stack of hub errors."""
    if Path(path).exists() or hub_reachable():
        return {}
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, need, revision=revision), str):
        log.info("%s cannot be reached: using the cached copy of %s", hub_endpoint(), path)
        return {"local_files_only": True}
    raise UserError(
        f"cannot download {path!r}: {hub_endpoint()} is not reachable from this machine and the model "
        "is not in the local Hugging Face cache",
        where="model.name_or_path",
        hint=f"download it where there is network (`huggingface-cli download {path}`) and copy the cache or the "
             "folder here (then give the folder), set HF_ENDPOINT to a mirror you can reach (for example "
             "https://hf-mirror.com), or try danlu with builtin:tiny",
    )


def hub_endpoint() -> str:
    import os

    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub (HF_ENDPOINT). Offline mode: False. Behind a proxy: True
    (the proxy decides; transformers uses it)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(hub_endpoint())
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _friendly(exc: Exception, name: str, trust_remote_code: bool) -> Exception:
    text = str(exc)
    if "trust_remote_code" in text and not trust_remote_code:
        return UserError(
            f"{name} contains custom code, which danlu does not run unless you allow it",
            where="model.trust_remote_code",
            hint="read the model's code first; then set model.trust_remote_code: true",
        )
    if ".bin" in text or "pytorch_model" in text or "use_safetensors" in text or "safetensors" in text.lower():
        return UnsafeFileError(
            f"{name} has no safetensors weights; danlu does not load pickle (.bin) files, which can run code",
            where="model.name_or_path",
            hint="convert the weights to safetensors in a sandbox (or pick a model that ships them)",
        )
    if isinstance(exc, OSError):
        return UserError(
            f"cannot load {name!r}: {text.splitlines()[0] if text else exc!r}",
            where="model.name_or_path",
            hint="check the hub id or path; offline, download it first or use builtin:tiny",
        )
    return exc


def check_remote_code(path: str, trust_remote_code: bool, *, revision: str | None = None,
                      local_files_only: bool = False) -> None:
    """Refuse a model whose config asks for its own Python code (auto_map) unless allowed.
    transformers would otherwise load its built-in class silently: a different model than
    the one published."""
    if trust_remote_code:
        return
    import json

    for name in ("config.json", "tokenizer_config.json"):
        try:
            from transformers.utils import cached_file

            found = cached_file(path, name, revision=revision, local_files_only=local_files_only,
                                _raise_exceptions_for_missing_entries=False)
        except (OSError, ValueError):
            found = None
        if not found:
            continue
        try:
            auto_map = json.loads(Path(found).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError):
            continue
        if auto_map:
            modules = sorted({str(v).split(".")[0] for v in _flatten(auto_map)})
            raise UserError(
                f"{path} ships its own Python code ({', '.join(m + '.py' for m in modules)}, from auto_map in {name}), "
                "which danlu does not run unless you allow it",
                where="model.trust_remote_code",
                hint="read that code first; then set model.trust_remote_code: true",
            )


def _flatten(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if v:
                yield from _flatten(v)
    elif value:
        yield value.split("--")[-1]


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path, need="tokenizer_config.json")
    where = hub_kwargs(path, "tokenizer_config.json", revision)
    check_remote_code(path, trust_remote_code, revision=revision, **where)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **where)
    except (OSError, ValueError) as exc:
        raise _friendly(exc, name_or_path, trust_remote_code) from None
    tok = follow_saved_file(tok, path, revision=revision, quiet=is_builtin(name_or_path), **where)
    if tok.pad_token is None:
        # pad == eos is safe here: labels are built explicitly, never by masking pad ids.
        tok.pad_token = tok.eos_token
    return tok


def load_processor(name_or_path: str, kind: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """The preprocessing object of an image model (kind "image": its image processor) or a speech
    model (kind "audio": its processor — feature extractor and tokenizer). Used where a text model
    has its tokenizer: saved with the artefact, read by the stage's data code."""
    from transformers import AutoImageProcessor, AutoProcessor

    path = resolve_model_path(name_or_path, need="preprocessor_config.json")
    where = hub_kwargs(path, "preprocessor_config.json", revision)
    check_remote_code(path, trust_remote_code, revision=revision, **where)
    cls = AutoImageProcessor if kind == "image" else AutoProcessor
    try:
        return cls.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **where)
    except (OSError, ValueError, ImportError) as exc:
        if isinstance(exc, ImportError) or "torchvision" in str(exc):
            raise UserError(f"cannot load the {kind} processor of {name_or_path}: {str(exc).splitlines()[0]}",
                            where="model.name_or_path",
                            hint="danlu uses the PIL image processors (no torchvision); save the model's "
                                 "preprocessor_config.json with a *ImageProcessorPil class") from None
        raise _friendly(exc, name_or_path, trust_remote_code) from None


def model_config_dict(name_or_path: str, *, revision: str | None = None) -> dict:
    """A model's config.json as a dict (no weights read), or {} where it cannot be found."""
    import json

    try:
        path = resolve_model_path(name_or_path)
        if Path(path).is_dir():
            return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        from transformers.utils import cached_file

        found = cached_file(path, "config.json", revision=revision, _raise_exceptions_for_missing_entries=False,
                            **hub_kwargs(path, "config.json", revision))
        return json.loads(Path(found).read_text(encoding="utf-8")) if found else {}
    except (OSError, ValueError, UserError):
        return {}


def compute_precision(requested: str = "auto") -> str:
    """fp32 | bf16 | fp16 for autocast. auto: bf16 on GPUs with bf16 and on CPUs with native
    bf16 matmuls (AMX / AVX512-BF16); fp16 on older GPUs; fp32 otherwise. On a CPU without
    native bf16, a bf16 matmul is hundreds of times slower than fp32 (measured)."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def storage_dtype(requested: str, *, trains_base: bool, precision: str = "fp32", quantized: bool = False):
    """Dtype of the weights in memory. Weights that train stay fp32 (master copy; autocast
    does the low-precision compute). A frozen base is bf16/fp16 on GPU, and bf16 on a CPU that
    computes in bf16 (AMX / AVX512-BF16: half the bytes, no per-step cast of every weight; the
    CPU bench runs 20% faster). A quantised base keeps fp32 for its unquantised parts on CPU."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if trains_base:
        return torch.float32
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" and not quantized else torch.float32


def model_class(task: str):
    import transformers as tf

    return {
        "causal_lm": tf.AutoModelForCausalLM,
        "seq_cls": tf.AutoModelForSequenceClassification,
        "token_cls": tf.AutoModelForTokenClassification,
        "image_cls": tf.AutoModelForImageClassification,
        "asr": tf.AutoModelForSpeechSeq2Seq,
        "base": tf.AutoModel,
        "image_text": tf.AutoModelForImageTextToText,  # vision-language (chosen by load_model from the config)
    }[task]


def is_vision_language(name_or_path: str, revision: str | None = None) -> bool:
    """The model is a vision-language one (its config has a vision_config: Qwen2-VL, LLaVA, Idefics3 ...)."""
    import json

    from danlu.models.processor import VLM_ARCHS

    path = Path(resolve_model_path(name_or_path))
    if not (path / "config.json").exists():
        return False  # a hub id: text-only unless its cached config says otherwise (see load_model)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    archs = config.get("architectures") or [VLM_ARCHS[0]]
    return "vision_config" in config and any(a.endswith(VLM_ARCHS) for a in archs)


def load_model(
    name_or_path: str,
    *,
    task: str = "causal_lm",
    dtype=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str = "auto",
    **kwargs: Any,
):
    """A transformers model from safetensors; `kwargs` go to from_pretrained (num_labels,
    quantization_config ...)."""
    path = resolve_model_path(name_or_path)
    kwargs.update(hub_kwargs(path, "config.json", revision))
    check_remote_code(path, trust_remote_code, revision=revision,
                      local_files_only=kwargs.get("local_files_only", False))
    if attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    if task == "causal_lm" and is_vision_language(path):
        task = "image_text"
    try:
        model = model_class(task).from_pretrained(
            path,
            dtype=dtype if dtype is not None else "auto",
            revision=revision,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            **kwargs,
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        raise _friendly(exc, name_or_path, trust_remote_code) from None
    if "quantization_config" in kwargs:
        fit_bnb_cpu_packing(model)
    return model


def fit_bnb_cpu_packing(model) -> int:
    """bitsandbytes (>= 0.49) repacks a 4-bit weight in place on its first no-grad forward on a CPU
    with AVX512-BF16, for a bf16-only kernel. That repack asserts shapes small models fail
    (out_features % 32, in_features % 64: builtin:tiny), changes the stored weight under a
    frozen base, and computes in bf16, so eval and merge would disagree with training. danlu keeps
    bitsandbytes' generic 4-bit path everywhere: one numeric path from training to merge. Returns
    how many layers were told so."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n
