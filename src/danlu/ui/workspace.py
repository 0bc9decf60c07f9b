"""The UI's workspace: one folder that holds everything the web UI may read or write — uploaded
data, saved configs, runs, exports. Every path a user types or picks is resolved here and
refused when it leaves the folder (`..`, an absolute path elsewhere, a symlink pointing out).

    WORKSPACE/
      data/       uploads land here (data files only: .jsonl .json .csv .parquet .txt)
      configs/    YAML written by the Train page (the exact file `danlu train` is given)
      runs/NAME/  run directories (output_dir), plus the UI's train.log and ui_job.json
      exports/    `danlu export` outputs
      evals/      `danlu eval` outputs
      .danlu-ui/  scratch (planner input, server logs)
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import UserError

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
MAX_UPLOAD_BYTES = 2 << 30  # 2 GiB: larger files belong on disk, picked from the workspace
SAFE_NAME = re.compile(r"[^A-Za-z0-9._\-\u4e00-\u9fff]+")


class OutsideWorkspace(UserError):
    """A path that would leave the workspace."""


@dataclass
class Workspace:
    root: Path

    def __post_init__(self):
        self.root = Path(self.root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- confinement -------------------------------------------------------------------------
    def resolve(self, path: str | Path, *, must_exist: bool = False) -> Path:
        """`path` (relative to the workspace, or absolute inside it) as an absolute path;
        refuses anything that resolves outside the workspace."""
        text = str(path).strip()
        if not text:
            raise UserError("no path given")
        if "\x00" in text:
            raise OutsideWorkspace(f"path {text!r} holds a NUL byte")
        p = Path(text).expanduser()
        full = (p if p.is_absolute() else self.root / p).resolve()
        if full != self.root and self.root not in full.parents:
            raise OutsideWorkspace(f"{text!r} is outside the workspace {self.root}",
                                   hint="pick a file inside the workspace (copy or upload it there first)")
        if must_exist and not full.exists():
            raise UserError(f"{text!r} does not exist in the workspace {self.root}")
        return full

    def relative(self, path: str | Path) -> str:
        """The workspace-relative form of a path inside it (what configs and pickers show)."""
        full = self.resolve(path)
        return "." if full == self.root else full.relative_to(self.root).as_posix()

    def dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- data --------------------------------------------------------------------------------
    def save_upload(self, uploaded: str | Path, name: str | None = None) -> str:
        """Copy an uploaded file (a temporary path given by the web server) into data/; only
        data files are accepted, and they are copied as bytes — never executed or unpickled."""
        src = Path(uploaded)
        name = safe_filename(name or src.name)
        if Path(name).suffix.lower() not in DATA_SUFFIXES:
            raise UserError(f"{name!r} is not a data file", hint=f"upload one of {', '.join(DATA_SUFFIXES)}")
        if src.stat().st_size > MAX_UPLOAD_BYTES:
            raise UserError(f"{name!r} is larger than {MAX_UPLOAD_BYTES >> 30} GiB",
                            hint="put it in the workspace folder on disk and pick it from the list")
        dest = _free_name(self.dir("data") / name)
        shutil.copyfile(src, dest)
        return self.relative(dest)

    def data_files(self) -> list[str]:
        """Data files anywhere in the workspace except inside runs and scratch folders."""
        skip = {".danlu-ui", "runs", "exports", "evals", ".git", ".venv", "node_modules"}
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if rel.parts and (rel.parts[0] in skip or any(part.startswith(".") for part in rel.parts)):
                continue
            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES:
                out.append(rel.as_posix())
            if len(out) >= 500:
                break
        return out

    def config_files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.dir("configs").glob("*.y*ml"))

    # -- runs and models ---------------------------------------------------------------------
    def runs(self) -> list[str]:
        """Run directories (those with config.yaml, metrics.jsonl or ui_job.json), newest first."""
        found = []
        for marker in ("config.yaml", "metrics.jsonl", "ui_job.json"):
            for p in self.root.glob(f"**/{marker}"):
                rel = p.parent.relative_to(self.root)
                if rel.parts and rel.parts[0] in (".danlu-ui", "configs", ".git", ".venv"):
                    continue
                if "checkpoints" in rel.parts or rel.parts[-1:] in (("adapter",), ("model",)):
                    continue
                found.append(p.parent)
        unique = {p: p.stat().st_mtime for p in found}
        return [self.relative(p) for p in sorted(unique, key=unique.get, reverse=True)]

    def finished_runs(self) -> list[str]:
        return [r for r in self.runs() if any((self.root / r / a / "danlu.json").is_file() for a in ("adapter", "model"))]

    def exported_models(self) -> list[str]:
        """Model folders written by `danlu export` (a config.json beside safetensors weights)."""
        out = []
        for cfg in sorted(self.dir("exports").glob("**/config.json")):
            if list(cfg.parent.glob("*.safetensors")):
                out.append(self.relative(cfg.parent))
        return out

    def read_json(self, path: str | Path) -> dict:
        p = self.resolve(path)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


def safe_filename(name: str) -> str:
    """A file name without folders or odd characters ('../../x.jsonl' → 'x.jsonl')."""
    base = Path(str(name).replace("\\", "/")).name
    base = SAFE_NAME.sub("_", base).strip("._") or "upload"
    return base[:120]


def _free_name(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise UserError(f"too many files named like {path.name}")
