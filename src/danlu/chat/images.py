"""Images in messages. A conversation keeps its text as strings; each image sits in the text as
the placeholder `IMAGE` ("<image>", LLaMA-Factory's convention) and, in order, in
`Conversation.images` as an `ImageRef`: a local path or a `data:image/...;base64,` URL (or raw
bytes), plus where the reference came from (file:line) for error messages. Pixels are read only
when asked (`ImageRef.open`), with PIL.

`content_parts(text)` turns a string back into content parts ({"type": "image"} / {"type": "text"})
for a processor's chat template; `count_images(messages)` counts the placeholders."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path

from danlu.chat.messages import RowError

IMAGE = "<image>"
DEFAULT_MAX_PIXELS = 4096 * 4096  # data.max_image_pixels: larger images are refused (decompression bombs)


class ImageError(RowError):
    """An image that is missing, unreadable or too large (reported with the row's file:line)."""


@dataclass
class ImageRef:
    """One image of a row: `source` is a path (relative to `base_dir`) or a data URL; `data` holds
    raw bytes when the image came as bytes (a parquet/HF image column)."""

    source: str = ""
    data: bytes | None = None
    base_dir: str = ""
    where: str = ""

    @property
    def label(self) -> str:
        if self.data is not None:
            return "<image bytes>"
        return self.source[:40] + "…" if self.source.startswith("data:") else self.source

    def path(self) -> Path | None:
        """The file of a path reference (None for a data URL or bytes)."""
        if self.data is not None or self.source.startswith("data:"):
            return None
        p = Path(self.source).expanduser()
        if p.is_absolute() or not self.base_dir:
            return p
        beside = Path(self.base_dir).expanduser() / p
        return beside if beside.exists() or not p.exists() else p  # else relative to the working folder

    def raw(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.source.startswith("data:"):
            return _data_url_bytes(self.source)
        if self.source.startswith(("http://", "https://")):
            raise ImageError(f"image {self.label!r}: remote URLs are not fetched (danlu works offline); "
                             "download the image and give its path")
        p = self.path()
        if not p.is_file():
            raise ImageError(f"image not found: {p}")
        try:
            return p.read_bytes()
        except OSError as e:
            raise ImageError(f"image {p}: cannot read ({e.strerror})") from e

    def check(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """ImageError when missing, unreadable (its header) or over max_pixels; the pixels are not decoded."""
        self._read(max_pixels, decode=False)

    def open(self, max_pixels: int = DEFAULT_MAX_PIXELS):
        """The image as an RGB PIL image; ImageError when missing, unreadable or over max_pixels."""
        return self._read(max_pixels, decode=True)

    def _read(self, max_pixels: int, decode: bool):
        from PIL import Image, UnidentifiedImageError

        data = self.raw()
        try:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(f"image {self.label!r} is {w}×{h} = {w * h} pixels, more than "
                                     f"data.max_image_pixels {max_pixels}; shrink it or raise data.max_image_pixels")
                return img.convert("RGB") if decode else None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as e:
            if isinstance(e, ImageError):
                raise
            raise ImageError(f"image {self.label!r} is not a readable image ({type(e).__name__}: {e})") from e


def _data_url_bytes(url: str) -> bytes:
    head, _, payload = url.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        raise ImageError(f"image data URL must look like data:image/png;base64,...; got {url[:40]!r}")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"image data URL is not valid base64 ({e})") from e


def image_ref(value, *, base_dir: str = "", where: str = "") -> ImageRef:
    """An image reference from a row's value: a path or data URL string, {"url": ...} / {"path": ...}
    (OpenAI's image_url object, HF datasets' image dict) or {"bytes": ...}."""
    if isinstance(value, str) and value.strip():
        return ImageRef(source=value.strip(), base_dir=base_dir, where=where)
    if isinstance(value, dict):
        if isinstance(value.get("bytes"), (bytes, bytearray)):
            return ImageRef(data=bytes(value["bytes"]), where=where)
        for key in ("url", "path"):
            if isinstance(value.get(key), str) and value[key].strip():
                return ImageRef(source=value[key].strip(), base_dir=base_dir, where=where)
    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value), where=where)
    raise RowError(f"an image must be a path, a data:image/...;base64 URL or {{\"bytes\": ...}}; got {value!r:.60}")


def content_parts(text: str) -> list[dict]:
    """A message string with IMAGE placeholders → processor content parts, in order."""
    parts: list[dict] = []
    for i, piece in enumerate(text.split(IMAGE)):
        if i:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def count_images(messages: list[dict]) -> int:
    return sum((m.get("content") or "").count(IMAGE) for m in messages if isinstance(m.get("content"), str))


def attach_images(messages: list[dict], images: list[ImageRef]) -> list[dict]:
    """Check that the placeholders match the images (LLaMA-Factory's rule); a row with images and
    no placeholder gets them all at the start of its first user turn."""
    n = count_images(messages)
    if images and n == 0:
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first] = {**messages[first], "content": IMAGE * len(images) + messages[first]["content"]}
    elif n != len(images):
        raise RowError(f"the row has {len(images)} image(s) but {n} {IMAGE} placeholder(s) in its messages; "
                       f"put one {IMAGE} where each image goes")
    return messages
