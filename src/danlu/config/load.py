"""YAML file + dotted overrides → RunConfig. Every error names the key, the file:line it came
from, and the closest valid key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from danlu.errors import ConfigError, closest


def _key_lines(text: str, path: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line (for error messages). A key given
    twice in one mapping is an error naming both lines (YAML itself would keep the last silently)."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*prefix, str(k.value))
                if key in lines and k.tag != "tag:yaml.org,2002:merge":
                    raise ConfigError(
                        f"'{'.'.join(key)}' is given twice (first at line {lines[key]}); YAML would keep only "
                        "the last one silently", where=f"{path}:{k.start_mark.line + 1}",
                        hint="delete one of the two lines")
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*prefix, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    walk(root, ())
    return lines


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.learning_rate=1e-4' → (['train', 'learning_rate'], 1e-4); values are parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE", hint="write e.g. train.learning_rate=1e-4")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-4 as a string (no dot); numbers are what users mean.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict[tuple[str, ...], str]:
    """Set each dotted override into `data` in place; returns key path → override text."""
    origin = {}
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        origin[tuple(parts)] = f"override {item!r}"
    return origin


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that holds the last key of `loc` (to suggest its valid keys)."""
    current: Any = cls
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _format_errors(exc: ValidationError, data: dict, cls, where_of) -> str:
    from danlu.methods.registry import METHODS

    messages: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_branch(p))
        method_cls = None
        if loc and loc[0] == "method" and len(loc) > 1 and isinstance(loc[1], str) and loc[1] in METHODS:
            method_cls = METHODS.get(loc[1])
            loc = ("method", *loc[2:])
        key = ".".join(str(p) for p in loc)
        where = where_of(tuple(str(p) for p in loc))
        if err["type"] == "extra_forbidden":
            holder = method_cls if (method_cls and len(loc) == 2) else _model_at(cls, loc)
            valid = list(holder.model_fields) if holder else []
            if holder:
                valid += [f.alias for f in holder.model_fields.values() if f.alias]
            near = closest(str(loc[-1]), valid)
            parent = ".".join(str(p) for p in loc[:-1])
            msg = f"unknown config key '{key}'"
            if near:
                msg += f"; did you mean '{parent + '.' if parent else ''}{near}'?"
            elif valid:
                msg += f"; valid keys here: {', '.join(sorted(valid))}"
        elif err["type"] == "union_tag_invalid":
            names = METHODS.names(with_aliases=True)
            got = data.get("method", {}).get("name") if isinstance(data.get("method"), dict) else None
            near = closest(str(got), names)
            msg = f"unknown method '{got}' at 'method.name'; choose one of: {', '.join(METHODS.names())}"
            if near:
                msg += f" (did you mean '{near}'?)"
        elif err["type"] == "union_tag_not_found":
            msg = "'method.name' is missing; e.g. method: {name: lora}"
        elif err["type"] == "missing":
            msg = f"required config key '{key}' is missing"
        else:
            got = err.get("input")
            msg = err["msg"]
            if err["type"] == "value_error" and (err.get("ctx") or {}).get("error"):
                msg = str(err["ctx"]["error"])  # our own sentence, without pydantic's "Value error, "
            expected = (err.get("ctx") or {}).get("expected")
            if err["type"] == "literal_error" and expected and isinstance(got, str):
                near = closest(got, [e.strip(" '") for e in expected.replace(" or ", ", ").split(",")])
                if near:
                    msg += f" (did you mean '{near}'?)"
            if key in messages:  # another branch of a union: "a number or 'auto'"
                messages[key].append(msg)
                continue
            shown = "" if isinstance(got, (dict, list)) else f", got {got!r}"
            msg = f"'{key}'{shown}: {msg}"
        messages.setdefault(key, []).append(f"{where}: {msg}" if where else msg)
    return "\n".join(" — or ".join(parts) for parts in messages.values())


def _is_union_branch(part) -> bool:
    """pydantic names union branches in error locations ('float', "literal['auto']", 'list[str]',
    'constrained-float' for a bounded number)."""
    return isinstance(part, str) and (
        "[" in part or part.startswith("constrained-") or part in ("int", "float", "str", "bool", "dict", "list", "none", "function-after", "tagged-union")
    )


def load_config_dict(data: dict, *, source: str = "<config>", lines=None, origin=None):
    """Validate a plain dict into a RunConfig; errors name key, file:line and closest key."""
    from danlu.config.schema import get_run_config_class

    cls = get_run_config_class()
    lines, origin = lines or {}, origin or {}

    def where_of(loc: tuple[str, ...]) -> str:
        for n in range(len(loc), 0, -1):
            if loc[:n] in origin:
                return origin[loc[:n]]
            if loc[:n] in lines:
                return f"{source}:{lines[loc[:n]]}"
        return source

    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, data, cls, where_of)) from None


def _decode(p: Path) -> str:
    """The file's text: UTF-8 (a BOM is fine); UTF-16 or other bytes are an error with the line."""
    raw = p.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4096]:
        raise ConfigError("the config file is UTF-16 (or holds NUL bytes), not UTF-8", where=str(p),
                          hint="save it as UTF-8 (in most editors: Save with encoding → UTF-8)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"byte 0x{raw[exc.start]:02x} is not UTF-8 (the file seems to use another encoding)",
                          where=f"{p}:{line}", hint="save the config file as UTF-8") from None


def read_yaml(path: str | Path) -> tuple[dict, dict]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = _decode(p)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of sections (model:, data:, method: ...)", where=str(p))
    return data, _key_lines(text, str(p))


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()):
    """Read CONFIG.yaml, apply `section.key=value` overrides, validate into RunConfig."""
    data, lines = read_yaml(path) if path else ({}, {})
    origin = apply_overrides(data, list(overrides))
    return load_config_dict(data, source=str(path or "<overrides>"), lines=lines, origin=origin)
