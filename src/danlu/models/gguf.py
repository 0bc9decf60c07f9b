"""GGUF files as model sources: `model.name_or_path` may be a `.gguf` file or a folder holding one.

transformers reads a GGUF (`from_pretrained(dir, gguf_file=...)`, needs the `gguf` package) and
dequantises its tensors to float32, but a model loaded that way refuses `save_pretrained` and every
later load would dequantise again. danlu converts a GGUF once into an ordinary Hugging Face folder
(safetensors, tokenizer, chat template and EOS from the GGUF's metadata) under
`$DANLU_HOME/gguf/<stem>-<key>/`, keyed by the file's size and the sha256 of its first and last
MiB (the header holds every tensor's name, shape, type and offset; the tail holds the last tensor
data), and every later step (train, chat, eval, serve, export, plan) uses that folder. The folder is
written in a temporary directory and renamed into place: two processes or a crash never leave
half a folder."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from danlu.errors import UserError
from danlu.paths import danlu_home

log = logging.getLogger(__name__)
CONVERTER_VERSION = 1
HASH_SPAN = 1 << 20  # bytes hashed at each end of the file
SOURCE_FILE = "danlu_gguf.json"  # written into the converted folder: where it came from


def is_gguf_source(name_or_path: str) -> bool:
    """A `.gguf` file, or a folder without config.json that holds a `.gguf` file."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p.suffix.lower() == ".gguf"
    return p.is_dir() and not (p / "config.json").exists() and any(p.glob("*.gguf"))


def gguf_file(name_or_path: str) -> Path:
    """The one `.gguf` file a path names (the file itself, or the only one in its folder)."""
    p = Path(name_or_path).expanduser().resolve()
    if p.is_file():
        return p
    found = sorted(p.glob("*.gguf"))
    if len(found) != 1:
        raise UserError(
            f"{p} holds {len(found)} .gguf files ({', '.join(f.name for f in found[:5])})",
            where="model.name_or_path",
            hint="give the path of the .gguf file you mean",
        )
    return found[0]


def file_key(path: Path) -> str:
    """A cache key for a GGUF file: its size plus the sha256 of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"{CONVERTER_VERSION}:{size}:".encode())
    with path.open("rb") as f:
        digest.update(f.read(HASH_SPAN))
        if size > 2 * HASH_SPAN:
            f.seek(size - HASH_SPAN)
        digest.update(f.read(HASH_SPAN))
    return digest.hexdigest()[:16]


def converted_path(name_or_path: str) -> Path:
    """The cached Hugging Face folder of a GGUF source, converted on first use."""
    src = gguf_file(name_or_path)
    stat = src.stat()
    return _converted(str(src), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _converted(src: str, size: int, mtime_ns: int) -> Path:  # size/mtime: a changed file is a new key
    path = Path(src)
    target = danlu_home() / "gguf" / f"{path.stem}-{file_key(path)}"
    if (target / "config.json").exists():
        log.info("%s: using its dequantised copy %s", path.name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, f".{path.stem}-")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=target.parent))
    try:
        _convert(path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: its folder is as good as ours
            log.info("another process converted %s first; using its folder", path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def remove_stale(folder: Path, prefix: str, older_than_s: float = 6 * 3600) -> None:
    """Temporary files or folders a killed conversion left behind (a live one is younger)."""
    for p in folder.glob(prefix + "*"):
        try:
            if time.time() - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                log.info("removed %s, left by an interrupted conversion", p)
        except OSError:
            pass


def gguf_metadata(path: Path) -> dict:
    """architecture, name, file type and chat template from a GGUF header (no tensors read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")
    out = {}
    for key in ("general.architecture", "general.name", "general.file_type", "tokenizer.chat_template"):
        field = reader.fields.get(key)
        if field is not None:
            out[key] = field.contents()
    return out


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError("reading a .gguf model needs the `gguf` package", where="model.name_or_path",
                        hint="pip install 'danlu[real]' (or pip install gguf)") from None


def _convert(path: Path, out: Path) -> None:
    """Dequantise `path` into `out`: config, float32 safetensors, tokenizer, generation config."""
    _require_gguf()
    start = time.perf_counter()
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture", "?")
    log.info("%s: dequantising the GGUF (%s architecture) into a plain Hugging Face folder, once",
             path.name, arch)
    model, tok = _load_gguf(path, arch)
    plain = _plain_copy(model)
    plain.save_pretrained(str(out), safe_serialization=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template_from = "the GGUF" if getattr(tok, "chat_template", None) else _install_family_template(tok)
    tok.save_pretrained(str(out))
    _save_generation_config(plain, tok, out)
    record = {"source": str(path), "size": path.stat().st_size, "key": file_key(path), "architecture": arch,
              "name": meta.get("general.name"), "eos_token": tok.eos_token,
              "chat_template": template_from,
              "converter_version": CONVERTER_VERSION, "seconds": round(time.perf_counter() - start, 1)}
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    log.info("%s: converted in %.0f s (eos %s, chat template %s)", path.name, record["seconds"],
             tok.eos_token, template_from)


def _install_family_template(tok) -> str:
    """A GGUF without a chat template (gemma-3-270m base) gets its family's, so the folder chats
    and serves without danlu too; a tokenizer of no known family stays without one."""
    from danlu.chat.templates import TEMPLATE_DIR, family_of

    family = family_of(tok)
    if family != "default":
        tok.chat_template = (TEMPLATE_DIR / f"{family}.jinja").read_text(encoding="utf-8")
        return f"danlu's {family!r} (the GGUF has none)"
    return "none"


def _load_gguf(path: Path, arch: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = {"gguf_file": path.name}
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), **where)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **where)
    except (ValueError, KeyError, NotImplementedError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise UserError(
            f"{path}: transformers cannot load a GGUF of the {arch!r} architecture ({text})",
            where="model.name_or_path",
            hint="convert the original (unquantised) model to a Hugging Face folder, or pick a model whose "
                 "architecture transformers reads from GGUF (llama, mistral, qwen2, gemma3, phi3 ...)",
        ) from None
    return model, tok


def _plain_copy(model):
    """The same weights in a model built from a plain config (no GGUF quantisation record), which
    `save_pretrained` accepts. Weights are shared, not copied."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config._name_or_path = ""
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False, assign=True)
    missing = [k for k in missing if k not in _tied_keys(plain)]
    if missing or unexpected:
        raise RuntimeError(f"rebuilding the GGUF model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    return plain.eval()


def _tied_keys(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else tied.keys())


def _save_generation_config(model, tok, out: Path) -> None:
    from transformers import GenerationConfig

    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    cfg_eos = model.config.eos_token_id
    for e in cfg_eos if isinstance(cfg_eos, list) else [cfg_eos]:
        if e is not None and e not in eos:
            eos.append(e)
    GenerationConfig(eos_token_id=eos or None, pad_token_id=tok.pad_token_id,
                     bos_token_id=model.config.bos_token_id, do_sample=False).save_pretrained(str(out))
