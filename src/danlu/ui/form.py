"""RunConfig schema → form fields → config dict, and back. No Gradio here: the Train page turns
each FieldSpec into a widget, and these functions turn widget values into the plain dict that
is written as YAML (only values that differ from the default, like a person would write it)
and validated by the same `load_config_dict` the CLI uses.

A field's `id` is unique across the form (`train.learning_rate`, `method.lora.r`, `dpo.beta`,
`eval.early_stopping.patience`) and is also its key in descriptions.zh-CN.yaml; its `path` is
where it goes in the YAML (`method.lora.r` → ('method', 'r'))."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from danlu.errors import ConfigError

REQUIRED = object()
SECTIONS = ("model", "data", "method", "stage", "train", "eval", "output")


@dataclass
class FieldSpec:
    id: str  # unique; the key of its Chinese description
    path: tuple[str, ...]  # where the value goes in the YAML
    section: str  # model | data | method | stage | train | eval | output
    group: str  # what must be chosen for it to show: "" | "method:lora" | "stage:dpo" | "eval.judge"
    kind: str  # bool | choice | int | float | text | list | auto_number | yaml | enable
    description: str
    default: Any = None
    required: bool = False
    optional: bool = False  # None is a valid value
    choices: list = field(default_factory=list)
    item: type = str  # list items: str | float | int
    single_ok: bool = False  # `str | list[str]`: one item is written as a plain string
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path[-1]

    def default_widget(self):
        return to_widget(self, None if self.required else self.default)


def _args(ann) -> tuple[Any, tuple]:
    return typing.get_origin(ann), typing.get_args(ann)


def _is_union(origin) -> bool:
    return origin in (typing.Union, types.UnionType)


def _model_of(ann) -> type[BaseModel] | None:
    """The model class of `Model` or `Model | None`."""
    origin, args = _args(ann)
    cands = [a for a in args if a is not type(None)] if _is_union(origin) else [ann]
    if len(cands) == 1 and isinstance(cands[0], type) and issubclass(cands[0], BaseModel):
        return cands[0]
    return None


BOOL_CHOICES = ["true", "false"]


def classify(ann) -> dict:
    """The widget kind of a type annotation and what it needs (choices, item type ...)."""
    origin, args = _args(ann)
    optional = _is_union(origin) and type(None) in args
    parts = [a for a in args if a is not type(None)] if _is_union(origin) else [ann]
    # a bounded number, Annotated[float, Field(gt=0)], is a number widget (the schema checks the bound)
    parts = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in parts]
    literals = [v for a in parts if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    others = [a for a in parts if typing.get_origin(a) is not typing.Literal]
    info = {"optional": optional}
    if not others:
        return {**info, "kind": "choice", "choices": literals}
    if others == [bool] and literals:  # `bool | "auto"`: a three-way choice, not a checkbox that loses auto
        return {**info, "kind": "choice", "choices": [*literals, *BOOL_CHOICES]}
    if others == [bool]:
        return {**info, "kind": "bool"}
    lists = [a for a in others if typing.get_origin(a) is list]
    if lists and all(a is str or typing.get_origin(a) is list for a in others):
        item = (typing.get_args(lists[0]) or (str,))[0]
        if item in (str, int, float):
            return {**info, "kind": "list", "item": item, "single_ok": str in others}
    if len(others) == 1 and others[0] in (int, float):
        kind = "int" if others[0] is int else "float"
        if literals == ["auto"]:
            return {**info, "kind": "auto_number", "item": others[0]}
        if not literals:
            return {**info, "kind": kind}
    if str in others:
        return {**info, "kind": "text", "choices": literals}
    return {**info, "kind": "yaml"}


def _specs_of(cls: type[BaseModel], prefix: tuple[str, ...], id_prefix: str, section: str, group: str) -> list[FieldSpec]:
    out = []
    for name, f in cls.model_fields.items():
        if prefix == ("method",) and name == "name":
            continue
        fid = f"{id_prefix}.{name}" if id_prefix else name
        path = (*prefix, name)
        default = REQUIRED if f.is_required() else f.get_default(call_default_factory=True)
        sub = _model_of(f.annotation)
        if sub is not None:  # a nested section, optional: switched on by its own checkbox
            out.append(FieldSpec(fid, path, section, group, "enable", f.description or "", default=False))
            out += _specs_of(sub, path, fid, section, fid)
            continue
        info = classify(f.annotation)
        out.append(FieldSpec(fid, path, section, group, info.pop("kind"), f.description or "", default=default,
                             required=default is REQUIRED, aliases=(f.alias,) if f.alias else (), **info))
    return out


def form_specs() -> list[FieldSpec]:
    """Every field of RunConfig, grouped by section; method and stage options once per method/stage."""
    from danlu.config.schema import DataConfig, EvalConfig, ModelConfig, TrainConfig, get_run_config_class
    from danlu.methods.registry import METHODS
    from danlu.stages.registry import STAGES

    cls = get_run_config_class()
    specs = _specs_of(ModelConfig, ("model",), "model", "model", "")
    specs += _specs_of(DataConfig, ("data",), "data", "data", "")
    for name, mcls in METHODS:
        specs += _specs_of(mcls, ("method",), f"method.{name}", "method", f"method:{name}")
    for name, scls in STAGES:
        specs += _specs_of(scls, (name,), name, "stage", f"stage:{name}")
    specs += _specs_of(TrainConfig, ("train",), "train", "train", "")
    specs += _specs_of(EvalConfig, ("eval",), "eval", "eval", "")
    out = cls.model_fields["output_dir"]
    specs.append(FieldSpec("output_dir", ("output_dir",), "output", "", "text", out.description or "",
                           default=out.default))
    return specs


def method_choices() -> list[str]:
    """Method names the selector offers: each method and its shorthands (qlora, dora ...)."""
    from danlu.methods.registry import METHODS

    return [n for name, _ in METHODS for n in (name, *METHODS.aliases_of(name))]


def stage_choices() -> list[str]:
    from danlu.stages.registry import STAGES

    return [name for name, _ in STAGES]


def canonical_method(name: str) -> str:
    from danlu.methods.registry import METHODS

    return METHODS.canonical(name)


def shown(spec: FieldSpec, method: str, stage: str, enabled: dict[str, bool]) -> bool:
    """Whether a field belongs to the chosen method and stage (and its nested sections are on)."""
    group = spec.group
    if group.startswith("method:"):
        return group == f"method:{canonical_method(method)}"
    if group.startswith("stage:"):
        return group == f"stage:{stage}"
    if group:  # nested: 'eval.judge' shows when eval.judge is switched on (and any section around it)
        parts = group.split(".")
        return all(enabled.get(".".join(parts[:i]), True) for i in range(1, len(parts))) and enabled.get(group, False)
    return True


# -- widget value ↔ config value -----------------------------------------------------------------
def to_widget(spec: FieldSpec, value):
    """A config value as its widget shows it."""
    if spec.kind == "enable":
        return bool(value)
    if value is None or value is REQUIRED:
        return False if spec.kind == "bool" else (None if spec.kind in ("int", "float") else "")
    if spec.kind == "list":
        items = value if isinstance(value, list) else [value]
        return ", ".join(str(v) for v in items)
    if spec.kind == "yaml":
        return yaml.safe_dump(value, allow_unicode=True, default_flow_style=True).strip()
    if isinstance(value, bool) and spec.kind == "choice":
        return "true" if value else "false"
    if spec.kind in ("text", "auto_number", "choice"):
        return str(value) if spec.kind != "choice" or value is not None else ""
    return value


def from_widget(spec: FieldSpec, raw):
    """A widget's value as the config value; raises ConfigError naming the key."""
    key = ".".join(spec.path)
    try:
        return _parse(spec, raw)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {raw!r} as {spec.kind.replace('_', ' ')}: {exc}", where=key) from None


def _parse(spec: FieldSpec, raw):
    if spec.kind in ("bool", "enable"):
        return bool(raw)
    if isinstance(raw, (list, tuple)):  # a multi-select widget: one item per entry
        raw = ", ".join(str(v).strip() for v in raw if str(v).strip())
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if spec.optional or spec.required:
            return None  # a missing required key is named by validation
        return [] if spec.kind == "list" else spec.default
    if spec.kind == "int":
        if float(raw) != int(float(raw)):
            raise ValueError("not a whole number")
        return int(float(raw))
    if spec.kind == "float":
        return float(raw)
    if spec.kind == "auto_number":
        text = str(raw).strip()
        if text == "auto":
            return "auto"
        return _whole(float(text)) if spec.item is int else float(text)
    if spec.kind == "list":
        items = [spec.item(v.strip()) for v in str(raw).split(",") if v.strip()]
        return items[0] if spec.single_ok and len(items) == 1 else items
    if spec.kind == "yaml":
        return yaml.safe_load(str(raw))
    text = str(raw).strip()
    if spec.kind == "choice" and spec.choices[-2:] == BOOL_CHOICES and text in BOOL_CHOICES:
        return text == "true"  # the bool half of a `bool | "auto"` choice
    return text


def _whole(x: float) -> int:
    if x != int(x):
        raise ValueError("not a whole number")
    return int(x)


def values_to_config(specs: list[FieldSpec], values: dict[str, Any], method: str, stage: str) -> dict:
    """Widget values (by spec id) → the config dict: required keys, and every shown value that
    differs from its default. Hidden fields (another method's, another stage's) are left out."""
    enabled = {s.id: bool(values.get(s.id)) for s in specs if s.kind == "enable"}
    data: dict = {"model": {}, "data": {}, "method": {"name": method}}
    if stage != "sft":
        data["stage"] = stage
    for spec in specs:
        if spec.kind == "enable" or not shown(spec, method, stage, enabled):
            continue
        value = from_widget(spec, values.get(spec.id))
        if not spec.required and _same(value, spec.default):
            continue
        if spec.required and value is None:
            continue  # validation names the missing key
        _put(data, spec.path, value)
    for spec in specs:  # a switched-on nested section is written even when all its values are defaults
        if spec.kind == "enable" and enabled.get(spec.id) and shown(spec, method, stage, enabled):
            _put(data, spec.path, _get(data, spec.path) or {}, keep=True)
    return data


def config_to_values(specs: list[FieldSpec], data: dict) -> tuple[dict[str, Any], str, str]:
    """A config dict (e.g. a loaded YAML) → (widget values by id, method, stage); a key the form
    does not know is the CLI's own error (unknown key, with the closest valid key)."""
    from danlu.config.load import load_config_dict

    method = str((data.get("method") or {}).get("name", "lora"))
    stage = str(data.get("stage", "sft"))
    values = {s.id: s.default_widget() for s in specs}
    used: set[tuple[str, ...]] = {("method", "name"), ("stage",)}
    for spec in specs:
        if spec.group.startswith("method:") and spec.group != f"method:{canonical_method(method)}":
            continue
        for path in (spec.path, *[(*spec.path[:-1], a) for a in spec.aliases]):
            found, value = _lookup(data, path)
            if found:
                values[spec.id] = (value is not None) if spec.kind == "enable" else to_widget(spec, value)
                used.add(path)
    unknown = [k for k in _leaf_paths(data) if not any(k[:len(u)] == u for u in used)]
    if unknown:
        load_config_dict(data)  # raises the CLI's own message (closest key, valid keys)
        raise ConfigError(f"the form has no field for '{'.'.join(unknown[0])}'")
    return values, method, stage


def _same(a, b) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _put(data: dict, path: tuple[str, ...], value, keep: bool = False) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if keep and isinstance(node.get(path[-1]), dict):
        return
    node[path[-1]] = value


def _get(data: dict, path: tuple[str, ...]):
    return _lookup(data, path)[1]


def _lookup(data: dict, path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _leaf_paths(data: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in data.items():
        path = (*prefix, str(k))
        if isinstance(v, dict) and v:
            out += _leaf_paths(v, path)
        else:
            out.append(path)
    return out


def schema_leaf_ids() -> set[str]:
    """Every leaf key of RunConfig as a spec id — what the coverage test compares the form against."""
    from danlu.config.schema import get_run_config_class
    from danlu.methods.registry import METHODS
    from danlu.stages.registry import STAGES

    ids: set[str] = set()

    def walk(cls, prefix: str):
        for name, f in cls.model_fields.items():
            sub = _model_of(f.annotation)
            key = f"{prefix}.{name}" if prefix else name
            if sub is not None:
                ids.add(key)
                walk(sub, key)
            else:
                ids.add(key)

    run = get_run_config_class()
    for section in ("model", "data", "train", "eval"):
        walk(_model_of(run.model_fields[section].annotation), section)
    for name, mcls in METHODS:
        walk(mcls, f"method.{name}")
        ids.discard(f"method.{name}.name")
    for name, scls in STAGES:
        walk(scls, name)
    ids.add("output_dir")
    return ids
