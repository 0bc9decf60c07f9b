"""What a data format provides: how to recognise a row, and how to turn it into a sample.
Shared checks on conversations live here (role order, empty turns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from danlu.chat.images import DEFAULT_MAX_PIXELS, ImageRef, attach_images, image_ref
from danlu.chat.messages import RowError
from danlu.chat.tools import parse_json_field  # noqa: F401  (formats import it from here)


@dataclass
class FormatOptions:
    system: str | None = None  # default system prompt for rows without one
    placeholders: dict[str, str] = field(default_factory=dict)  # {{name}} → value
    columns: dict[str, str] = field(default_factory=dict)  # our field name → the row's field name
    dataset_dir: str = "data"  # folder of a LLaMA-Factory dataset_info.json, for lf:NAME sources
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # data.max_image_pixels: larger images are bad rows


class Format:
    name: ClassVar[str]
    kind: ClassVar[str]  # conversation | text | preference | unpaired | labelled | prompt
    signature: ClassVar[tuple[str, ...]] = ()  # fields whose presence identifies the format
    priority: ClassVar[int] = 50  # lower is tried first by auto-detection

    @classmethod
    def detect(cls, row: dict) -> bool:
        return all(k in row for k in cls.signature)

    def convert(self, row: dict, opts: FormatOptions) -> Any:
        raise NotImplementedError


def text_field(row: dict, key: str, *, required: bool = True, allow_empty: bool = False) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise RowError(f"missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field {key!r} must be a string, got {describe_value(value)}")
    if required and not allow_empty and not value.strip():
        raise RowError(f"field {key!r} is empty")
    return value


def facts_field(row: dict) -> list | None:
    """The optional `facts` of an eval row: key facts its answer must state, each a string or a
    list of equivalent spellings (["$29", ["600", "六百"]]); scored by the `facts` metric."""
    value = row.get("facts")
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        (isinstance(f, str) and f.strip())
        or (isinstance(f, list) and f and all(isinstance(a, str) and a.strip() for a in f)) for f in value)
    if not ok:
        raise RowError("field 'facts' must be a non-empty list of strings or lists of equivalent strings, "
                       'e.g. ["$29", ["7", "seven"]]')
    return value


def describe_value(value) -> str:
    """How a non-string value reads in a message: 'a number (4)', 'NaN', 'a list'."""
    if isinstance(value, float) and value != value:
        return "NaN (quote it if it is text)"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"a number ({value!r}; quote it if it is text)"
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)


def fill_placeholders(text: str, placeholders: dict[str, str]) -> str:
    for key, value in placeholders.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def finish_messages(messages: list[dict], opts: FormatOptions, *, require_assistant_last: bool = True) -> list[dict]:
    """Apply the default system prompt and placeholders, then check role order:
    [system] (user, assistant [tool... assistant])*, ending with an assistant turn."""
    if opts.system and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": opts.system}, *messages]
    if opts.placeholders:
        for m in messages:
            if isinstance(m.get("content"), str):
                m["content"] = fill_placeholders(m["content"], opts.placeholders)
    check_roles(messages, require_assistant_last=require_assistant_last)
    return messages


def check_roles(messages: list[dict], *, require_assistant_last: bool = True) -> None:
    if not messages:
        raise RowError("no messages")
    prev = None
    for i, m in enumerate(messages):
        role = m.get("role")
        content = m.get("content")
        if role not in ("system", "user", "assistant", "tool"):
            raise RowError(f"message {i + 1}: unknown role {role!r} (use system, user, assistant, tool)")
        if content is not None and not isinstance(content, str):
            raise RowError(f"message {i + 1}: content must be a string, got {type(content).__name__}")
        if role == "system":
            if i != 0:
                raise RowError(f"message {i + 1}: a system message may only come first")
        elif role == "user":
            if prev not in (None, "system", "assistant"):
                raise RowError(f"message {i + 1}: wrong role order: user after {prev}")
        elif role == "assistant":
            if prev not in ("user", "tool"):
                raise RowError(f"message {i + 1}: wrong role order: assistant after {prev or 'nothing'}")
            if not (content or "").strip() and not m.get("tool_calls"):
                raise RowError(f"message {i + 1}: empty assistant turn")
        elif role == "tool":
            if prev not in ("assistant", "tool") or (prev == "assistant" and not messages[i - 1].get("tool_calls")):
                raise RowError(f"message {i + 1}: a tool result must follow an assistant tool call")
        prev = role
    if require_assistant_last and prev != "assistant":
        raise RowError("the conversation does not end with an assistant turn")
    if not any(m["role"] == "user" for m in messages):
        raise RowError("no user turn")


def row_images(row: dict, messages: list[dict], *, column: str | None = "images", found: list | None = None,
               base_dir: str = "") -> list[ImageRef]:
    """The images of a row, checked against its "<image>" placeholders (chat/images.py): those met
    as content parts while parsing (`found`) or LLaMA-Factory's `images` column (paths; relative
    ones resolved against `base_dir`, else the data file's folder). A row without images gets []."""
    given = row.get(column) if column else None
    if given is not None and not isinstance(given, list):
        given = [given]
    if found and given:
        raise RowError(f"the row has image content parts and an {column!r} field; use one of them")
    for media in ("videos", "audios"):
        if row.get(media):
            raise RowError(f"field {media!r}: danlu trains on text and images; {media} are not supported yet")
    images = list(found or []) or [image_ref(v, base_dir=base_dir) for v in (given or [])]
    if images or column and row.get(column) is not None:
        attach_images(messages, images)
    return images
