"""Plain text: {"text": ...} (and .txt files) — loss on every token; continued pretraining."""

from __future__ import annotations

from danlu.chat.messages import Text
from danlu.data.formats.base import Format, FormatOptions, fill_placeholders, text_field
from danlu.data.formats.registry import register_format


@register_format("text")
class PlainText(Format):
    kind = "text"
    signature = ("text",)
    priority = 90

    @classmethod
    def detect(cls, row):
        return "text" in row and "label" not in row

    def convert(self, row, opts: FormatOptions) -> Text:
        return Text(fill_placeholders(text_field(row, "text"), opts.placeholders))
