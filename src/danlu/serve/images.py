"""Images in chat requests (`image_url` content parts) → PIL images, with the server's limits.

An image is one of:
- a base64 data URL (`data:image/png;base64,...`): what the official openai client sends for a
  local file; decoded, its byte size and pixel count checked before the model sees it;
- a path on the server (`/srv/photos/a.png` or `file:///srv/photos/a.png`): only inside a folder
  the server was started with (`danlu serve --image-dir DIR`, repeatable); the path is resolved
  (`..` and symlinks followed) before the check, so nothing outside those folders can be read.
  Without --image-dir every path is refused;
- a remote http(s) URL: always refused — danlu serves offline and fetches nothing.

Every refusal is a 400 in OpenAI's shape naming the part (`messages[0].content[1]`)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from danlu.serve.errors import bad_request

DATA_URL = re.compile(r"^data:(?P<mime>image/[A-Za-z0-9.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")


@dataclass(frozen=True)
class ImagePolicy:
    """What a server accepts: folders local paths may come from, the largest image (bytes of the
    file, decoded pixels), and the most images in one request."""
    dirs: tuple[Path, ...] = ()
    max_bytes: int = 8 << 20
    max_pixels: int = 4096 * 4096
    max_images: int = 8
    roots: tuple[Path, ...] = field(init=False, default=())

    def __post_init__(self):
        object.__setattr__(self, "roots", tuple(Path(d).expanduser().resolve() for d in self.dirs))


def load_image(url: str, policy: ImagePolicy, param: str):
    """The RGB PIL image an `image_url.url` names (or a 400 APIError saying why not)."""
    url = url.strip()
    scheme = urlparse(url).scheme.lower() if "://" in url[:16] or url[:5].lower() == "data:" else ""
    if scheme in ("http", "https", "ftp"):
        raise bad_request(f"{param}: danlu serve runs offline and does not fetch remote images ({scheme}:// URL); "
                          "send the image itself as a base64 data URL (data:image/png;base64,...)",
                          param=param, code="remote_image_refused")
    if scheme == "data":
        return _open(_data_bytes(url, policy, param), policy, param)
    if scheme not in ("", "file"):
        raise bad_request(f"{param}: unsupported image URL scheme {scheme!r}; send a base64 data URL or a path in "
                          "one of the server's --image-dir folders", param=param, code="invalid_image")
    path = Path(unquote(urlparse(url).path) if scheme == "file" else url)
    return _open(_local_bytes(path, policy, param), policy, param)


def _data_bytes(url: str, policy: ImagePolicy, param: str) -> bytes:
    match = DATA_URL.match(url)
    if not match:
        raise bad_request(f"{param}: not a base64 image data URL; expected data:image/png;base64,...",
                          param=param, code="invalid_image")
    data = match["data"]
    if len(data) * 3 // 4 > policy.max_bytes:
        raise _too_large(param, len(data) * 3 // 4, policy)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{param}: the data URL is not valid base64", param=param, code="invalid_image") from None


def _local_bytes(path: Path, policy: ImagePolicy, param: str) -> bytes:
    if not policy.roots:
        raise bad_request(f"{param}: this server does not read images from its disk; send a base64 data URL, or "
                          "start the server with --image-dir DIR to allow paths inside DIR",
                          param=param, code="image_path_refused")
    try:
        real = path.expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        real = None
    if real is None or not any(real.is_relative_to(root) for root in policy.roots):
        # the same answer for "missing" and "outside": a client cannot probe the server's files
        raise bad_request(f"{param}: no image at {str(path)!r} inside the server's --image-dir folders",
                          param=param, code="image_path_refused")
    size = real.stat().st_size if real.is_file() else -1
    if size < 0:
        raise bad_request(f"{param}: {str(path)!r} is not a file", param=param, code="image_path_refused")
    if size > policy.max_bytes:
        raise _too_large(param, size, policy)
    return real.read_bytes()


def _too_large(param: str, size: int, policy: ImagePolicy):
    return bad_request(f"{param}: the image is {size} bytes; this server takes images up to {policy.max_bytes} "
                       "bytes (danlu serve --max-image-mb)", param=param, code="image_too_large")


def _open(raw: bytes, policy: ImagePolicy, param: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as probe:
            width, height = probe.size  # the header only: no pixels decoded yet
            if width * height > policy.max_pixels:
                raise bad_request(f"{param}: the image is {width}x{height} pixels; this server takes at most "
                                  f"{policy.max_pixels} pixels", param=param, code="image_too_large")
            probe.load()
            return probe.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise bad_request(f"{param}: not a readable image ({type(exc).__name__}); send PNG, JPEG, GIF, WEBP or BMP",
                          param=param, code="invalid_image") from None
