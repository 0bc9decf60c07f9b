"""The config reference tables of the READMEs, generated from the schema (English descriptions
from the Field definitions, Chinese ones from descriptions.zh-CN.yaml). `python -m
danlu.config.docs` rewrites the tables between the markers in README.md and README.zh-CN.md;
a test fails when they are out of date."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ZH = Path(__file__).with_name("descriptions.zh-CN.yaml")
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
HEAD = {"en": ("key", "type", "default", "description"), "zh": ("键", "类型", "默认值", "说明")}


def _zh() -> dict[str, str]:
    return yaml.safe_load(ZH.read_text(encoding="utf-8")) or {}


def _type(field) -> str:
    return _type_text(field.annotation).replace("|", "\\|")


def _type_text(ann) -> str:
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:  # a bounded number: Annotated[float, Field(gt=0)]
        return _type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is list:
        return f"list[{_type_text(args[0])}]" if args else "list"
    if origin is dict:
        return "dict"
    if ann is type(None):
        return "null"
    return getattr(ann, "__name__", str(ann))


def escape_cell(text: str) -> str:
    """A table cell: a bare | would end the cell (an escaped one stays as it is)."""
    import re

    return re.sub(r"(?<!\\)\|", r"\\|", text)


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return ""
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _rows(cls, prefix: str, lang: str, zh: dict, zh_prefix: str | None = None, skip: tuple = ()) -> list[str]:
    rows = []
    for name, field in cls.model_fields.items():
        if (name == "name" and prefix == "method") or name in skip:
            continue
        key = f"{prefix}.{name}" if prefix else name
        desc = field.description or ""
        if lang == "zh":
            desc = zh.get(f"{zh_prefix or prefix}.{name}" if (zh_prefix or prefix) else name, desc)
        desc = escape_cell(desc)
        rows.append(f"| `{key}` | {_type(field)} | {_default(field)} | {desc} |")
    return rows


def reference_markdown(lang: str = "en") -> str:
    from danlu.config.schema import DataConfig, EvalConfig, ModelConfig, TrainConfig, get_run_config_class
    from danlu.methods.registry import METHODS
    from danlu.stages.registry import STAGES

    zh = _zh()
    cls = get_run_config_class()
    head = "| " + " | ".join(HEAD[lang]) + " |\n|---|---|---|---|"
    out = [head]
    for section, sec_cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        out += _rows(sec_cls, section, lang, zh)
    stage_desc = cls.model_fields["stage"].description if lang == "en" else zh.get("stage", "")
    bar = " \\| "
    out.append(f"| `stage` | {bar.join(n for n, _ in STAGES)} | `\"sft\"` | {stage_desc} |")
    out_desc = cls.model_fields["output_dir"].description if lang == "en" else zh.get("output_dir", "")
    out.append(f"| `output_dir` | str | `\"runs/danlu\"` | {out_desc} |")
    ow_desc = cls.model_fields["overwrite_output_dir"].description if lang == "en" else zh.get("overwrite_output_dir", "")
    out.append(f"| `overwrite_output_dir` | bool | `false` | {escape_cell(ow_desc)} |")
    names = ", ".join(f"`{n}`" + (f" ({', '.join(METHODS.aliases_of(n))})" if METHODS.aliases_of(n) else "")
                      for n, _ in METHODS)
    method_desc = "Fine-tuning method" if lang == "en" else zh.get("method.name", "")
    out.append(f"| `method.name` | {names} | (required) | {method_desc} |")
    from danlu.methods.base import Method

    common = tuple(n for n in Method.model_fields if n != "name")  # every method's (vision-language freezing)
    out += _rows(Method, "method", lang, zh)
    for name, mcls in METHODS:
        rows = _rows(mcls, "method", lang, zh, zh_prefix=f"method.{name}", skip=common)
        if rows:
            label = f"options of `{name}`" if lang == "en" else f"`{name}` 的选项"
            out.append(f"| **{label}** | | | |")
            out += rows
    for name, scls in STAGES:
        rows = _rows(scls, name, lang, zh)
        if rows:
            label = f"options of stage `{name}`" if lang == "en" else f"阶段 `{name}` 的选项"
            out.append(f"| **{label}** | | | |")
            out += rows
    return "\n".join(out)


def render_into(path: Path, lang: str) -> str:
    text = path.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n{reference_markdown(lang)}\n{END}{after}"


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for name, lang in (("README.md", "en"), ("README.zh-CN.md", "zh")):
        p = root / name
        p.write_text(render_into(p, lang), encoding="utf-8")
        print(f"updated {p}")


if __name__ == "__main__":
    main()
