"""What text a data row holds, whatever its format, and the normalisations the workbench
matches on.

A row is walked as JSON: every string value is content except the values of structural keys
(`role`, `from`, `label`, ...), which name things rather than say them. So one function serves
alpaca, sharegpt, messages, preference and plain-text rows alike, and formats added later need
no change here."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

# values of these keys are names or tags, never content to clean, match or scrub
STRUCTURAL_KEYS = frozenset({"role", "from", "type", "name", "id", "tool_call_id", "label", "kto_tag"})
# sub-trees holding machine-readable JSON (tool schemas, call arguments): cleaning would break them
MACHINE_KEYS = frozenset({"tools", "tool_calls", "functions"})
MACHINE_ROLES = frozenset({"function_call", "observation", "tool"})


def _is_machine_turn(obj: dict) -> bool:
    return str(obj.get("role", obj.get("from", ""))).lower() in MACHINE_ROLES


def iter_strings(obj, fields: tuple[str, ...] | None = None, *, machine: bool = True) -> Iterator[str]:
    """Every content string in `obj` in order (only under the top-level `fields` if given);
    with machine=False, tool schemas, tool calls and tool results are left out."""
    if isinstance(obj, dict) and fields:
        for key in fields:
            if key in obj:
                yield from iter_strings(obj[key], machine=machine)
        return
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        if not machine and _is_machine_turn(obj):
            return
        for key, value in obj.items():
            if key in STRUCTURAL_KEYS or (not machine and key in MACHINE_KEYS):
                continue
            yield from iter_strings(value, machine=machine)
    elif isinstance(obj, list):
        for item in obj:
            yield from iter_strings(item, machine=machine)


def map_strings(obj, fn: Callable[[str], str], *, machine: bool = True):
    """A copy of `obj` with `fn` applied to every content string (same walk as iter_strings)."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        if not machine and _is_machine_turn(obj):
            return obj
        skip = STRUCTURAL_KEYS if machine else STRUCTURAL_KEYS | MACHINE_KEYS
        return {k: v if k in skip else map_strings(v, fn, machine=machine) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_strings(v, fn, machine=machine) for v in obj]
    return obj


def content_text(row: dict, fields: tuple[str, ...] | None = None) -> str:
    """The row's content as one string (fields joined by newlines)."""
    return "\n".join(s for s in iter_strings(row, fields) if s)


_NOT_WORD = re.compile(r"[\W_]+")


def match_key(text: str) -> str:
    """Text reduced to what makes two rows 'the same': NFKC, case folded, punctuation and
    whitespace removed ("Hello, World!" and "hello world" match; so do 你好，世界 and 你好世界)."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


# CJK ideographs, kana and hangul count one token per character; other scripts by word
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def tokens(text: str) -> list[str]:
    """Words for alphabetic scripts and single characters for CJK, NFKC + case folded:
    the units n-gram overlap is counted in ("GPT-3 style" 13-grams work for Chinese too)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


_SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("en", re.compile(r"[A-Za-z]")),
)


def language_of(text: str) -> str:
    """A row's language by script (no model): 'zh', 'ja', 'ko', 'ru', 'en' (Latin) or 'other'.
    Characters are weighted so that one Han character counts like a short Latin word, so a
    Chinese answer that names 'Slack' or 'API' stays Chinese."""
    counts = {lang: len(rx.findall(text)) for lang, rx in _SCRIPTS}
    if counts["ja"] >= 3:  # kana only occur in Japanese; Japanese also uses Han characters
        return "ja"
    weights = {"ko": 3.0, "zh": 3.0, "ru": 1.0, "en": 1.0}
    best = max(weights, key=lambda lang: counts[lang] * weights[lang])
    return best if counts[best] else "other"
