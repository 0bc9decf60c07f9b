"""What the Train, Chat and Estimate pickers offer: models (builtin, found in the workspace and the
Hugging Face cache, the planner's table of popular hub ids), datasets (workspace files and the `lf:`
entries of a LLaMA-Factory dataset_info.json), chat templates, GPUs, and what Chat can load (runs,
adapters, checkpoints, exports). Every list is a suggestion: the pickers also take free text."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
TEMPLATES = ("auto", "chatml", "qwen", "llama3", "mistral", "default")
MAX_SCAN = 200


def model_choices(ws) -> list[str]:
    """builtin:* first (no download), the installed packaged real models (pkg:*), then local models,
    then the planner's popular hub ids."""
    from danlu.models.builtin import SPECS
    from danlu.models.packaged import PACKAGED, installed

    out = [f"builtin:{name}" for name in SPECS]
    out += [f"pkg:{key}" for key, entry in PACKAGED.items() if installed(entry)]
    out += workspace_models(ws)
    out += hf_cache_models()
    out += planner_models()
    return list(dict.fromkeys(out))


def workspace_models(ws) -> list[str]:
    """Folders in the workspace holding a model (config.json beside *.safetensors), runs excluded."""
    out = []
    for cfg in sorted(ws.root.glob("**/config.json"))[:MAX_SCAN]:
        rel = cfg.parent.relative_to(ws.root)
        if rel.parts and rel.parts[0] in (".danlu-ui", "runs", ".git", ".venv"):
            continue
        if any(cfg.parent.glob("*.safetensors")):
            out.append(rel.as_posix() or ".")
    return out


def hf_cache_models() -> list[str]:
    """Hub ids whose snapshots are in the local Hugging Face cache (models--org--name)."""
    root = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(Path.home(), ".cache", "huggingface")), "hub")
    try:
        names = sorted(p.name for p in Path(root).iterdir() if p.name.startswith("models--"))
    except OSError:
        return []
    return [n.removeprefix("models--").replace("--", "/", 1) for n in names[:MAX_SCAN]]


def planner_models() -> list[str]:
    """The hub ids of `danlu plan`'s bundled table (decoders only: encoders are for classify)."""
    import yaml

    from danlu.plan.arch import TABLE

    try:
        table = yaml.safe_load(TABLE.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [k for k, v in table.items() if isinstance(v, dict) and v.get("model_type") != "bert"]


def dataset_choices(ws, dataset_dir: str | None = "data") -> list[str]:
    """Workspace data files, then `lf:NAME` for each entry of DATASET_DIR/dataset_info.json."""
    files = [f for f in ws.data_files() if Path(f).name != "dataset_info.json"]
    return files + lf_entries(ws, dataset_dir or "data")


def lf_entries(ws, dataset_dir: str) -> list[str]:
    try:
        path = ws.resolve(dataset_dir) / "dataset_info.json"
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, Exception):  # a missing / broken file just offers nothing
        return []
    return [f"lf:{name}" for name in info] if isinstance(info, dict) else []


def gpu_choices(this_machine: str = "this machine") -> list[tuple[str, str]]:
    """(label, key) of the planner's GPUs, after this machine ('' : `danlu plan` detects it)."""
    from danlu.plan.hardware import GPUS

    return [(this_machine, "")] + [(label, key) for key, (label, *_rest) in GPUS.items()]


def chat_targets(ws) -> list[str]:
    """What Chat can load: finished runs, their adapters, the checkpoints of any run, exports."""
    out = []
    for run in ws.runs():
        root = ws.root / run
        for art in ("adapter", "model"):
            if (root / art / "danlu.json").is_file():
                out += [run, f"{run}/{art}"]
        steps = sorted((p for p in (root / "checkpoints").glob("step-*") if p.is_dir()),
                       key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else 0)
        out += [ws.relative(p) for p in reversed(steps)]
    return list(dict.fromkeys(out + ws.exported_models()))
