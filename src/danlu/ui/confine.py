"""The one list of RunConfig fields that name a file, a folder or code, and how the web UI keeps
each inside its workspace. A config the UI starts (or resumes) is checked against it:

- a **path** field (`data.train`, `train.resume`, `*.reward_model`, ...) may hold a name that is
  no path (builtin:tiny, a hub id, a named template, `auto`); a path must resolve inside the
  workspace (`..`, absolute paths elsewhere and symlinks that point out are refused);
- a **folder** field (`output_dir`) is always a path;
- a **code** field (`*.reward_functions`) may name a built-in reward, `path/file.py:function` with
  the file inside the workspace, or `module:function` whose module is a file of the workspace and
  not also importable from outside it (an installed or standard-library module is refused).

`PLAIN` lists the text fields that hold none of these. tests/unit/ui/test_confine.py enumerates
the whole RunConfig schema (every method and stage) and fails on a text field in neither list, so
a new path-valued field cannot slip through unconfined."""

from __future__ import annotations

import fnmatch
import importlib.machinery
import re
import sys
from functools import lru_cache
from pathlib import Path

from danlu.errors import UserError
from danlu.ui.workspace import OutsideWorkspace, Workspace

# dotted YAML key (`*` = any stage section) → how its value is confined
CONFINED: dict[str, str] = {
    "model.name_or_path": "path",
    "model.adapter": "path",  # an earlier run or adapter folder, inside the workspace like any input
    "data.train": "path",
    "data.eval": "path",
    "data.dataset_dir": "path",
    "data.template": "path",
    "train.resume": "path",
    "*.teacher": "path",
    "*.reward_model": "path",
    "*.reward_functions": "code",
    "output_dir": "folder",
}
# text fields that never name a file, a folder or code (names, prompts, URLs, module-name patterns)
PLAIN: tuple[str, ...] = (
    "model.revision", "data.format", "data.system", "data.placeholders",
    "method.target_modules", "method.modules_to_save", "method.modules", "method.feedforward_modules",
    "method.init_text", "*.text_column", "*.label_column", "*.text_pair_column", "*.labels",
    "*.image_column", "*.audio_column", "asr.language",
    "*.reward_weights", "train.report_to", "eval.metrics", "eval.early_stopping.metric",
    "eval.judge.base_url", "eval.judge.model", "eval.judge.api_key_env", "eval.judge.rubric",
)
NOT_PATHS = {"train.resume": ("auto", "never")}
BUILTIN_REWARDS = ("json_valid",)
BUILTIN_REWARD_PREFIXES = ("regex:", "contains:")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".jinja", ".yaml", ".yml", ".safetensors")
MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def kind_of(key: str) -> str | None:
    """'path' | 'folder' | 'code' for a confined dotted key, else None."""
    return next((kind for pattern, kind in CONFINED.items() if fnmatch.fnmatchcase(key, pattern)), None)


def is_plain(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in PLAIN)


def confine_config(ws: Workspace, data: dict) -> None:
    """Refuse a config (a plain dict, as written to YAML) that names a file, folder or code
    outside the workspace; the error names the config key."""

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            key = _canonical(f"{prefix}{name}")
            if isinstance(value, dict) and kind_of(key) is None:
                walk(value, f"{key}.")
                continue
            kind = kind_of(key)
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, str) and item.strip():
                    where = f"{key}[{i}]" if isinstance(value, list) else key
                    try:
                        _check(ws, kind, key, item.strip())
                    except OutsideWorkspace as exc:
                        raise OutsideWorkspace(str(exc).split("\n")[0], where=where,
                                               hint="the web UI reads and runs only what is inside its workspace; "
                                                    "copy the file there first") from None

    walk(data, "")


def _check(ws: Workspace, kind: str | None, key: str, value: str) -> None:
    if kind is None or value in NOT_PATHS.get(key, ()):
        return
    if kind == "folder" or (kind == "path" and (key == "train.resume" or is_local_path(ws, value))):
        ws.resolve(value)
    elif kind == "code":
        check_code(ws, value)


def check_code(ws: Workspace, spec: str) -> None:
    """A reward function spec the UI may run: built-in, or code that lives in the workspace."""
    if spec in BUILTIN_REWARDS or spec.startswith(BUILTIN_REWARD_PREFIXES) or ":" not in spec:
        return  # unknown names are the schema's to refuse; they import nothing
    module = spec.rpartition(":")[0]
    if module.endswith(".py") or "/" in module or "\\" in module:
        ws.resolve(module)
        return
    if not MODULE.fullmatch(module):
        raise OutsideWorkspace(f"{module!r} is not a module name or a .py file")
    top = module.split(".")[0]
    base = ws.root / Path(*module.split("."))
    inside = any(p.is_file() for p in (base.with_suffix(".py"), base / "__init__.py"))
    if not inside or _importable_elsewhere(ws, top):
        raise OutsideWorkspace(f"reward module {module!r} is not a file of the workspace {ws.root} "
                               "(an installed or standard-library module is not run from the UI)")
    ws.resolve(base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py")


def _importable_elsewhere(ws: Workspace, top: str) -> bool:
    if top in sys.builtin_module_names or top in sys.stdlib_module_names or top in sys.modules:
        return True
    outside = [p for p in sys.path if p and Path(p).resolve() != ws.root]
    return importlib.machinery.PathFinder.find_spec(top, outside) is not None


def is_local_path(ws: Workspace, value: str) -> bool:
    """A filesystem path (rather than builtin:*, a hub id, or a template name)."""
    if value.startswith("builtin:") or "://" in value:
        return False
    p = Path(value).expanduser()
    if p.is_absolute() or ".." in p.parts or value.startswith((".", "~")) or "\\" in value:
        return True
    if (ws.root / p).exists() or p.suffix.lower() in FILE_SUFFIXES:
        return True
    return "/" in value and not HUB_ID.fullmatch(value)  # org/name is a hub id; a/b/c a folder


def _canonical(key: str) -> str:
    return _aliases().get(key, key)


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """A field written under its alias → its dotted key (`method.lora_r` style spellings)."""
    from danlu.ui.form import form_specs

    return {".".join((*s.path[:-1], a)): ".".join(s.path) for s in form_specs() for a in s.aliases}


def refuse_outside(ws: Workspace, config_path: Path) -> None:
    """Confine a YAML the UI is about to run (a resume runs the file as it is on disk)."""
    import yaml

    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {config_path}: {exc}") from None
    if isinstance(data, dict):
        confine_config(ws, data)
