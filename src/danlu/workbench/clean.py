"""`danlu data clean`: normalise text (NFKC, whitespace, control characters, HTML) and drop rows
that are empty, too short, too long, in the wrong language or no longer valid for their format.
Every rule counts the rows it changed or dropped.

Rules that change text work on content strings only (see rowtext): roles, labels, tool schemas,
tool calls and tool results are left alone, so cleaning never breaks a row's structure."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

from danlu.chat.messages import RowError
from danlu.data.formats import FORMATS, FormatOptions, detect_format
from danlu.data.report import reason_category
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output, default_output, iter_good_rows
from danlu.workbench.rowtext import content_text, language_of, map_strings


@dataclass
class CleanOptions:
    nfkc: bool = True
    fold_cjk_punct: bool = False  # NFKC would turn ，？！：；（） into ASCII; Chinese text keeps them unless asked
    whitespace: bool = True
    control: bool = True
    html: bool = True
    min_chars: int = 0  # rows with fewer content characters are dropped (0: no limit)
    max_chars: int = 0  # rows with more are dropped (0: no limit)
    languages: tuple[str, ...] = ()  # keep only these ('zh', 'en', 'ja', 'ko', 'ru', 'other'); empty: all


# --- text rules: each returns the new string --------------------------------------------------

# full-width punctuation NFKC would fold to ASCII; kept by moving it out of NFKC's way
_CJK_PUNCT = "，！？：；（）［］｛｝＂＇"
_HIDDEN = {c: chr(0xF0000 + i) for i, c in enumerate(_CJK_PUNCT)}  # private-use plane: NFKC leaves it


def nfkc(text: str, fold_cjk_punct: bool = False) -> str:
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    if fold_cjk_punct:
        return unicodedata.normalize("NFKC", text)
    hidden = [(c, h) for c, h in _HIDDEN.items() if c in text]  # str.replace beats translate() here
    for c, h in hidden:
        text = text.replace(c, h)
    text = unicodedata.normalize("NFKC", text)
    for c, h in hidden:
        text = text.replace(h, c)
    return text


_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


_ANY_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]")


def strip_control(text: str) -> str:
    """Control characters (not tab or newline) and zero-width characters removed; a lone CR is a newline."""
    if not _ANY_CONTROL.search(text):  # most text: one scan, no copies
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _ZERO_WIDTH.sub("", _CONTROL.sub("", text))


_TRAILING_SPACE = re.compile(r"[ \t\u00a0\u3000]+$", re.M)
_ODD_SPACE = re.compile("[\u00a0\u2000-\u200a\u202f\u205f]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


_ANY_UNTIDY = re.compile("[\u00a0\u2000-\u200a\u202f\u205f]|[ \t\u00a0\u3000]$|\n\n\n", re.M)


def tidy_whitespace(text: str) -> str:
    """Odd spaces made plain, trailing spaces cut, at most one blank line in a row, ends stripped.
    Spaces inside a line are kept: indentation in code answers matters."""
    if not _ANY_UNTIDY.search(text):
        return text.strip()
    text = _ODD_SPACE.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


_TAGS = ("a|abbr|article|aside|b|big|blockquote|body|br|caption|center|cite|code|col|colgroup|dd|del|details|"
         "div|dl|dt|em|figcaption|figure|font|footer|h[1-6]|head|header|hr|html|i|img|ins|kbd|label|li|link|"
         "main|mark|meta|nav|ol|p|pre|q|s|section|small|span|strike|strong|sub|summary|sup|table|tbody|td|"
         "tfoot|th|thead|title|tr|tt|u|ul|wbr")
_BLOCK_END = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|h[1-6]|blockquote|pre|table|section|article)\s*>", re.I)
_TAG = re.compile(rf"</?(?:{_TAGS})\b[^<>]*>|<!--.*?-->", re.I | re.S)
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,6});")
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]+`", re.S)  # markdown code: its HTML is the content


def strip_html(text: str) -> str:
    """Known HTML tags, comments, scripts and styles removed and entities decoded, outside
    markdown code. `a < b`, `List<String>` and `<EMAIL>` are not tags and stay."""
    if "<" not in text and "&" not in text:
        return text
    parts, last = [], 0
    for m in _CODE.finditer(text):
        parts.append(_strip_html_prose(text[last:m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(_strip_html_prose(text[last:]))
    return "".join(parts)


def _strip_html_prose(text: str) -> str:
    if not (_TAG.search(text) or _ENTITY.search(text)):
        return text
    text = _SCRIPT.sub("", text)
    text = _BLOCK_END.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text)


def text_rules(opts: CleanOptions) -> list[tuple[str, object]]:
    rules = []
    if opts.control:
        rules.append(("control", strip_control))
    if opts.html:
        rules.append(("html", strip_html))
    if opts.nfkc:
        rules.append(("nfkc", lambda t: nfkc(t, opts.fold_cjk_punct)))
    if opts.whitespace:
        rules.append(("whitespace", tidy_whitespace))
    return rules


# --- rows -------------------------------------------------------------------------------------

def clean_row(row: dict, rules, changed: set[str]) -> dict:
    """The row with every text rule applied; names of the rules that changed something go into `changed`."""
    def apply(text: str) -> str:
        for name, rule in rules:
            new = rule(text)
            if new != text:
                changed.add(name)
                text = new
        return text

    return map_strings(row, apply, machine=False)


def drop_reason(row: dict, opts: CleanOptions, converter) -> str | None:
    """Why a cleaned row is dropped, or None to keep it."""
    text = content_text(row)
    if not text.strip():
        return "empty"
    if converter is not None:
        try:
            converter.convert(row, FormatOptions())
        except RowError as exc:
            cat = reason_category(str(exc))
            return "empty" if cat in ("empty assistant turn", "empty field") else "invalid"
    n = len(text)
    if opts.min_chars and n < opts.min_chars:
        return "too_short"
    if opts.max_chars and n > opts.max_chars:
        return "too_long"
    if opts.languages and language_of(text) not in opts.languages:
        return "language"
    return None


def clean_data(source: str, output: str | None = None, opts: CleanOptions | None = None, *,
               fmt: str = "auto", on_bad_row: str = "error") -> Summary:
    """Clean `source` into `output` (default: SOURCE.clean.jsonl); returns the summary."""
    opts = opts or CleanOptions()
    out = check_output(output or default_output(source, "clean"), [source])
    summary = Summary("clean", inputs=[source], outputs=[str(out)])
    rules = text_rules(opts)
    converter = None if fmt == "auto" else FORMATS.get(fmt, where="--format")()
    with AtomicRowWriter(out) as writer:
        for raw in iter_good_rows(source, on_bad_row, summary):
            summary.rows_in += 1
            if converter is None and fmt == "auto":
                name = detect_format(raw.data)
                converter = FORMATS.get(name)() if name else None
                fmt = name or "unknown"
            changed: set[str] = set()
            row = clean_row(raw.data, rules, changed)
            reason = drop_reason(row, opts, converter)
            if reason:
                summary.drop(reason)
                continue
            for name in changed:
                summary.change(name)
            writer.write(row)
            summary.rows_out += 1
    summary.counts["format"] = fmt
    return summary.done()
