"""Adapter chains: train on top of an earlier adapter (`model.adapter`), and accept a run
directory wherever a model is expected (`model.name_or_path: runs/sft` → its base + its adapter).

Import-light (no torch): the config validator calls `split_run_dir` on every ModelConfig.

  continue  the earlier adapter itself keeps training (SFT → DPO on the same LoRA)
  stack     the earlier adapter is merged into the base and frozen; a new adapter trains on top.
            The artefact keeps a copy of the earlier one under `stacked/` (danlu.json `stacked`),
            and loading applies and merges it before the new adapter.

The artefact's danlu.json records `chain`: every earlier link (source, stage, method, mode)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UserError

STACKED = "stacked"  # folder inside an artefact holding the adapters merged under it


@dataclass
class AdapterSource:
    """An earlier adapter to build on."""

    path: Path  # the adapter folder (adapter_config.json + safetensors)
    base_model: str
    info: dict = field(default_factory=dict)  # its danlu.json ({} for a plain PEFT folder)
    peft_config: dict = field(default_factory=dict)

    def link(self, mode: str) -> dict:
        """This source as one link of a chain (what run_info.json and danlu.json record)."""
        method = (self.info.get("method") or {}).get("name") or str(self.peft_config.get("peft_type", "")).lower()
        return {"source": str(self.path.resolve()), "stage": self.info.get("stage"), "method": method, "mode": mode}

    def chain(self) -> list[dict]:
        """The links that produced this adapter (its own recorded chain)."""
        return list(self.info.get("chain") or [])


def _run_artefact(p: Path) -> Path | None:
    """The artefact folder of a run directory (adapter/ or model/), or p itself if it is one."""
    if (p / "danlu.json").is_file():
        return p
    for name in ("adapter", "model"):
        if (p / name / "danlu.json").is_file():
            return p / name
    return None


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def find_adapter(target: str, *, where: str = "model.adapter") -> AdapterSource:
    """A run directory, an adapter/ folder of a run, or a plain PEFT adapter folder."""
    p = Path(target).expanduser()
    if not p.is_dir():
        raise UserError(f"{target} does not exist or is not a folder", where=where,
                        hint="give a run directory (runs/my-sft) or a PEFT adapter folder (with adapter_config.json)")
    folder = _run_artefact(p) or p
    info = _read(folder / "danlu.json")
    if info.get("artefact") == "model":
        raise UserError(f"{target} holds a full model (model/), not an adapter", where=where,
                        hint=f"train on it as the base instead: model.name_or_path: {folder}")
    config = _read(folder / "adapter_config.json")
    if not config:
        if (p / "checkpoints").is_dir():
            raise UserError(f"run {p} has no final adapter yet (training did not finish)", where=where,
                            hint=f"finish it first: danlu train {p}/config.yaml --resume")
        raise UserError(f"{target} is not an adapter (no adapter_config.json)", where=where,
                        hint="give a run directory (runs/my-sft), its adapter/ folder, or a PEFT adapter folder")
    base = info.get("base_model") or config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{folder} does not say which base model it was trained on", where=where,
                        hint="set base_model_name_or_path in its adapter_config.json")
    return AdapterSource(folder, str(base), info, config)


def split_run_dir(data):
    """ModelConfig input with `name_or_path` pointing at a run or an adapter folder → the base in
    name_or_path and the adapter in `adapter` (a full-model run → its model/ folder)."""
    if not isinstance(data, dict) or not isinstance(data.get("name_or_path"), str):
        return data
    p = Path(data["name_or_path"]).expanduser()
    if str(data["name_or_path"]).startswith("builtin:") or not p.is_dir() or (p / "config.json").is_file():
        return data
    folder = _run_artefact(p)
    if folder is None and not (p / "adapter_config.json").is_file():
        return data  # resolve_model_path explains what is missing
    data = dict(data)
    if folder is not None and _read(folder / "danlu.json").get("artefact") == "model":
        data["name_or_path"] = str(folder)
        return data
    if data.get("adapter"):
        raise ValueError(f"name_or_path {p} is a run with an adapter, and model.adapter is set too: "
                         "give the base model in name_or_path and the run in model.adapter")
    source = find_adapter(str(p), where="model.name_or_path")
    data["name_or_path"], data["adapter"] = source.base_model, str(source.path)
    return data


def canonical(name: str) -> str:
    """One spelling per base model: builtin names as they are, local folders resolved, hub ids as given."""
    if name.startswith("builtin:"):
        return name
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else name


def stacked_dirs(artefact: Path, info: dict) -> list[Path]:
    """The adapters merged under this one, in the order they are applied."""
    return [artefact / rel for rel in info.get("stacked") or []]


def describe(info: dict) -> str:
    """One line for chat / serve / export: 'sft (runs/a) → dpo' or '' without a chain."""
    chain = info.get("chain") or []
    if not chain:
        return ""
    parts = [f"{link.get('stage') or link.get('method')} ({link['source']}, {link['mode']})" for link in chain]
    return " → ".join([*parts, str(info.get("stage", "?"))])
