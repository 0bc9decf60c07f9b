"""What `danlu merge` reads: run directories, artefacts (adapter/ or model/), model directories,
builtin:* models or hub ids, each turned into a folder of safetensors weights. An adapter is first
folded into its base (PEFT merge) in a temporary folder, so every input is a whole model."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UnsafeFileError, UserError

log = logging.getLogger(__name__)
INDEX = "model.safetensors.index.json"
TASK_SUFFIXES = {"ForCausalLM": "causal_lm", "ForSequenceClassification": "seq_cls",
                 "ForTokenClassification": "token_cls"}


@dataclass
class Source:
    """One input model: where its weights are, and what danlu knows about it."""

    name: str  # as given on the command line
    folder: Path  # holds config.json and *.safetensors
    info: dict = field(default_factory=dict)  # danlu.json of an artefact ({} for a plain model)

    @property
    def task(self) -> str:
        if self.info.get("task"):
            return self.info["task"]
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        for arch in config.get("architectures") or []:
            for suffix, task in TASK_SUFFIXES.items():
                if arch.endswith(suffix):
                    return task
        return "causal_lm"


def weight_map(folder: Path) -> dict[str, Path]:
    """Tensor name → the safetensors file holding it (one file, or shards with an index)."""
    index = folder / INDEX
    if index.is_file():
        mapping = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in mapping.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = [f.name for f in folder.glob("*.bin")]
        if pickles:
            raise UnsafeFileError(f"{folder} holds only pickle weights ({', '.join(pickles)}); danlu reads safetensors",
                                  hint="convert them to safetensors in a sandbox, from a source you trust")
        raise UserError(f"{folder} holds no weights (*.safetensors)")
    from safetensors import safe_open

    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            out.update({name: f for name in fh.keys()})
    return out


def local_model_dir(name: str) -> Path:
    """A local folder for a builtin model, a model directory or a hub id (downloaded or cached)."""
    from danlu.models.load import resolve_model_path

    path = Path(resolve_model_path(name))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                            "*.jinja", "tokenizer*"]))
    except Exception as exc:  # noqa: BLE001 — offline, unknown id, gated repo: all mean "cannot get it"
        raise UserError(f"cannot find model {name!r}: {str(exc).splitlines()[0]}",
                        hint="give a run directory, an artefact, a model directory or builtin:*; offline, download it first") from None


def materialise_adapter(artefact: Path, info: dict, tmp: Path) -> Path:
    """Fold an adapter into its base (full precision) and save the whole model under `tmp`."""
    import torch

    from danlu.infer.load import load_for_inference
    from danlu.methods.registry import METHODS

    method = METHODS.get(info["method"]["name"])
    if not method.can_merge:
        raise UserError(f"{artefact}: a {info['method']['name']} adapter cannot be folded into its base model",
                        hint="merge needs adapters that merge (LoRA, DoRA ...) or full fine-tunes")
    log.info("folding adapter %s into its base %s", artefact, info["base_model"])
    loaded = load_for_inference(str(artefact), dtype=torch.float32, device="cpu", merge=True)
    tmp.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(str(tmp), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(tmp))
    return tmp


def open_source(name: str, tmp_root: Path) -> Source:
    from danlu.infer.load import find_artefact

    artefact = find_artefact(name) if Path(name).exists() else None
    if artefact is None:
        return Source(name, local_model_dir(name))
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8"))
    if info.get("artefact") == "adapter":
        folder = materialise_adapter(artefact, info, tmp_root / f"input-{len(list(tmp_root.glob('input-*')))}")
        return Source(name, folder, info)
    return Source(name, artefact, info)


def common_base(sources: list[Source], base: str | None) -> str | None:
    """The base model: as given, else the one every adapter was trained on."""
    if base:
        return base
    bases = {s.info.get("base_model") for s in sources if s.info.get("artefact") == "adapter"}
    if len(bases) > 1:
        raise UserError(f"the adapters were trained on different base models: {', '.join(sorted(map(str, bases)))}",
                        hint="merge only models or adapters of one base")
    return bases.pop() if bases else None
