"""Images and audio named by data rows: where the file is (relative to the data file), reading it
with a reason a person can act on when it is missing or unreadable, and the labelled media rows of
a folder-per-class layout. Pillow reads images; soundfile reads audio and soxr resamples it (the
`audio` extra)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from danlu.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_IMAGE_PIXELS = 64_000_000  # refused above this (a decompression bomb, or a scan far too large to train on)


class MediaError(ValueError):
    """A media file cannot be used; the message says why (the row is dropped or, under
    data.on_bad_row: error, stops the run)."""


@dataclass
class MediaRow:
    where: str  # file:line, or the media file itself (folder-per-class)
    path: Path  # the image or audio file
    target: str  # the label (classify) or the transcript (asr)


def media_path(value, where: str, data_file: Path | None) -> Path:
    """The file a row names: absolute, or relative to the data file's folder."""
    if not isinstance(value, str) or not value.strip():
        raise MediaError(f"the media path must be a non-empty string, got {value!r}")
    p = Path(value).expanduser()
    if not p.is_absolute() and data_file is not None:
        p = data_file.parent / p
    if not p.is_file():
        raise MediaError(f"file not found: {p}")
    return p


def read_image(path: Path):
    """An RGB PIL image, decoded (so a truncated or corrupt file fails here, not mid-training)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise MediaError(f"image too large: {im.width}x{im.height} pixels in {path} "
                                 f"(at most {MAX_IMAGE_PIXELS:,})")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise MediaError(f"unreadable image {path}: {str(exc).splitlines()[0][:160]}") from None


def audio_seconds(path: Path) -> float:
    """The clip's length, read from its header (the samples are not decoded)."""
    sf = _soundfile()
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        raise MediaError(f"unreadable audio {path}: {str(exc).splitlines()[0][:160]}") from None
    return info.frames / max(info.samplerate, 1)


def read_audio(path: Path, sampling_rate: int):
    """Mono float32 samples at `sampling_rate` (channels averaged, resampled with soxr)."""
    import numpy as np

    sf = _soundfile()
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        raise MediaError(f"unreadable audio {path}: {str(exc).splitlines()[0][:160]}") from None
    mono = samples.mean(axis=1)
    if rate != sampling_rate:
        import soxr

        mono = soxr.resample(mono, rate, sampling_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError):
        raise DataError("reading audio needs soundfile and soxr", hint="pip install 'danlu[audio]'") from None
    return soundfile


def is_class_folder(source: str) -> bool:
    """A folder whose sub-folders hold images: one class per sub-folder."""
    p = Path(source).expanduser()
    return p.is_dir() and any(d.is_dir() and _images_in(d) for d in p.iterdir())


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def class_folder_rows(source: str) -> list[MediaRow]:
    """Every image under root/CLASS/… as a row labelled CLASS (classes and files sorted)."""
    root = Path(source).expanduser()
    rows = []
    for d in sorted(x for x in root.iterdir() if x.is_dir() and not x.name.startswith(".")):
        rows += [MediaRow(str(f), f, d.name) for f in _images_in(d)]
    return rows
