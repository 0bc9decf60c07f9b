"""English and Chinese for every word the UI shows. Strings live in strings.en.yaml and
strings.zh.yaml (the same keys; a test keeps them in step); config field descriptions come from
the schema (English) and config/descriptions.zh-CN.yaml (Chinese).

Translation happens on the server: `Labels` remembers which component attribute shows which
string, and a language switch sends one update per component. The first language is the
browser's (its Accept-Language header)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

LANGS = {"en": "English", "zh": "中文"}
HERE = Path(__file__).resolve().parent
ZH_DESCRIPTIONS = HERE.parent / "config" / "descriptions.zh-CN.yaml"


@lru_cache(maxsize=None)
def strings(lang: str) -> dict[str, str]:
    return yaml.safe_load((HERE / f"strings.{lang}.yaml").read_text(encoding="utf-8")) or {}


def t(key: str, lang: str = "en", **fmt: Any) -> str:
    """The string `key` in `lang` (English when missing), formatted with `fmt`."""
    text = strings(lang if lang in LANGS else "en").get(key) or strings("en").get(key) or key
    return text.format(**fmt) if fmt else text


def lang_from_header(accept_language: str | None) -> str:
    """'zh-CN,zh;q=0.9,en;q=0.8' → 'zh'; the first of our languages the browser asks for, else en."""
    prefs = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        prefs.append((-weight, i, tag.strip().lower()))
    for _, _, tag in sorted(prefs):
        base = tag.split("-")[0]
        if base in LANGS:
            return base
    return "en"


@lru_cache(maxsize=1)
def zh_descriptions() -> dict[str, str]:
    return yaml.safe_load(ZH_DESCRIPTIONS.read_text(encoding="utf-8")) or {}


def describe(spec, lang: str) -> str:
    """A form field's description in `lang`, with its default."""
    from danlu.ui.form import REQUIRED

    text = zh_descriptions().get(spec.id, spec.description) if lang == "zh" else spec.description
    if spec.kind == "enable":
        return text
    if spec.default is REQUIRED:
        return f"{text} ({t('form.required', lang)})"
    default = spec.default
    shown = "null" if default is None else json.dumps(default, ensure_ascii=False)
    return f"{text} ({t('form.default', lang)}: {shown})"


Text = str | Callable[[str], str]


class Labels:
    """Which component attribute shows which string: `add(button, value='train.start')`,
    `add(field, label=..., info=lambda lang: ...)`; `updates(lang)` re-labels them all."""

    def __init__(self):
        self.items: list[tuple[Any, dict[str, Any]]] = []

    def add(self, component, **attrs):
        """Register `component` and give it its English strings now (the page's first render)."""
        self.items.append((component, attrs))
        for attr, value in self.resolve(attrs, "en").items():
            setattr(component, attr, value)
        return component

    @property
    def components(self) -> list:
        return [c for c, _ in self.items]

    def resolve(self, attrs: dict[str, Any], lang: str) -> dict[str, Any]:
        out = {}
        for attr, text in attrs.items():
            if attr == "choices":  # [(key, value), ...] → [(translated, value), ...]
                out[attr] = [(_text(k, lang), v) for k, v in text]
            else:
                out[attr] = _text(text, lang)
        return out

    def updates(self, lang: str) -> list:
        import gradio as gr

        return [gr.update(**self.resolve(attrs, lang)) for _, attrs in self.items]


def _text(text: Text, lang: str) -> str:
    return text(lang) if callable(text) else t(text, lang)


@lru_cache(maxsize=1)
def field_labels() -> dict[str, list[str]]:
    return yaml.safe_load((HERE / "field_labels.yaml").read_text(encoding="utf-8")) or {}


def field_label(spec, lang: str) -> str:
    """A field's label in words: field_labels.yaml, else its key as words ('max_bad_steps' →
    'Max bad steps'), so a new config key appears labelled without UI code."""
    pair = field_labels().get(spec.id)
    if pair:
        return pair[1] if lang == "zh" and len(pair) > 1 else pair[0]
    words = spec.name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def field_info(spec, lang: str, *, short: bool = False) -> str:
    """The dotted key (what the YAML says) and, unless `short`, the description with its default."""
    key = ".".join(spec.path)
    return key if short else f"{key} — {describe(spec, lang)}"
