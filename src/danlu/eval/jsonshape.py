"""Is a JSON answer of the right shape? Either a JSON schema (the common subset: type,
properties, required, additionalProperties, items, enum, const, minItems/maxItems, anyOf/oneOf)
or the shape of the reference answer (same keys at every level, same value types)."""

from __future__ import annotations

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def matches_schema(value, schema: dict) -> bool:
    if not isinstance(schema, dict):
        return True
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(matches_schema(value, s) for s in schema[key]):
            return False
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(TYPES.get(k, lambda v: True)(value) for k in kinds):
            return False
    if isinstance(value, dict):
        return _object_ok(value, schema)
    if isinstance(value, list):
        return _array_ok(value, schema)
    return True


def _object_ok(value: dict, schema: dict) -> bool:
    props = schema.get("properties", {})
    if any(k not in value for k in schema.get("required", [])):
        return False
    if schema.get("additionalProperties") is False and any(k not in props for k in value):
        return False
    return all(matches_schema(value[k], s) for k, s in props.items() if k in value)


def _array_ok(value: list, schema: dict) -> bool:
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
        return False
    items = schema.get("items")
    return items is None or all(matches_schema(v, items) for v in value)


def _kind(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def same_shape(value, reference) -> bool:
    """Same keys at every level and the same JSON type for every value (arrays: every item of
    the answer has the shape of the reference's first item)."""
    if _kind(value) != _kind(reference):
        return False
    if isinstance(reference, dict):
        return set(value) == set(reference) and all(same_shape(value[k], reference[k]) for k in reference)
    if isinstance(reference, list) and reference:
        return all(same_shape(v, reference[0]) for v in value)
    return True
