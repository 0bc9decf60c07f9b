"""Labelled rows for classification.

  labelled         {"text", "label", "text_pair"?}: a label name ("billing") or id (3); the
                   columns are renamed with classify.text_column / label_column / text_pair_column
  token_labelled   {"tokens": [...], "tags" | "ner_tags" | "labels": [...]}: one label per word
                   (CoNLL / Hugging Face NER layout), for token classification"""

from __future__ import annotations

from dataclasses import dataclass

from danlu.chat.messages import Labelled, RowError
from danlu.data.formats.base import Format, FormatOptions, text_field
from danlu.data.formats.registry import register_format

TAG_KEYS = ("tags", "ner_tags", "labels")


@dataclass
class TokenLabelled:
    """Token classification: words and one label (name or id) per word."""

    words: list[str]
    tags: list
    where: str = ""


def label_value(value, key: str):
    """A label: a non-empty name or a non-negative integer id."""
    if isinstance(value, bool) or value is None:
        raise RowError(f"field {key!r} must be a label name or id, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if text.isdigit() else text
    raise RowError(f"field {key!r} must be a label name or a non-negative integer id, got {value!r}")


@register_format("labelled")
class LabelledText(Format):
    kind = "labelled"
    signature = ("text", "label")
    priority = 40

    def convert(self, row, opts: FormatOptions) -> Labelled:
        text_key = opts.columns.get("text", "text")
        label_key = opts.columns.get("label", "label")
        pair_key = opts.columns.get("text_pair")
        if label_key not in row:
            raise RowError(f"missing field {label_key!r}")
        pair = text_field(row, pair_key) if pair_key else None
        return Labelled(text=text_field(row, text_key), label=label_value(row[label_key], label_key), text_pair=pair)


@register_format("token_labelled")
class TokenLabelledRow(Format):
    kind = "token_labelled"
    priority = 40

    @classmethod
    def detect(cls, row):
        return "tokens" in row and any(k in row for k in TAG_KEYS)

    def convert(self, row, opts: FormatOptions) -> TokenLabelled:
        words = row.get(opts.columns.get("text", "tokens"))
        tag_key = opts.columns.get("label") or next((k for k in TAG_KEYS if k in row), "tags")
        tags = row.get(tag_key)
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise RowError("field 'tokens' must be a non-empty list of words")
        if not isinstance(tags, list) or len(tags) != len(words):
            got = len(tags) if isinstance(tags, list) else type(tags).__name__
            raise RowError(f"field {tag_key!r} must be a list with one label per word ({len(words)}), got {got}")
        return TokenLabelled(words=words, tags=[label_value(t, tag_key) for t in tags])
