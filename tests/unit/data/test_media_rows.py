"""Media rows (danlu.data.media, stages/_media_data): paths relative to the data file, a folder per
class, bad files counted with file:line or raised under on_bad_row: error; audio resampled to 16 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from danlu.data.media import MediaError, read_audio, read_image
from danlu.data.report import DataReport
from danlu.errors import DataError
from danlu.stages._media_data import media_rows


def _png(path, colour=(255, 0, 0)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_rows_resolve_paths_and_count_bad_files(tmp_path):
    _png(tmp_path / "pics" / "a.png")
    (tmp_path / "pics" / "b.png").write_bytes(b"GIF89a broken")
    data = tmp_path / "rows.jsonl"
    data.write_text('{"image": "pics/a.png", "label": "x"}\n{"image": "pics/none.png", "label": "y"}\n'
                    '{"image": "pics/b.png", "label": "y"}\n{"label": "y"}\nnot json\n')
    report = DataReport()
    rows = media_rows(str(data), media_col="image", target_col="label", on_bad_row="skip", report=report,
                      check=lambda r: read_image(r.path))
    assert [(r.path.name, r.target) for r in rows] == [("a.png", "x")]
    assert report.rows_read == 5 and report.num_dropped == 4
    listed = {row["where"]: cat for cat, e in report.dropped.items() for row in e["rows"]}
    assert listed == {f"{data}:2": "media file not found", f"{data}:3": "unreadable media file",
                      f"{data}:4": "missing field", f"{data}:5": "invalid JSON"}
    with pytest.raises(DataError) as err:
        media_rows(str(data), media_col="image", target_col="label", on_bad_row="error", report=DataReport(),
                   check=lambda r: read_image(r.path))
    assert err.value.where == f"{data}:2"


def test_folder_per_class(tmp_path):
    for name in ("cat/1.png", "cat/2.png", "dog/1.png"):
        _png(tmp_path / "photos" / name)
    report = DataReport()
    rows = media_rows(str(tmp_path / "photos"), media_col="image", target_col="label", on_bad_row="skip",
                      report=report, check=lambda r: None, folders=True)
    assert [r.target for r in rows] == ["cat", "cat", "dog"]
    assert report.formats[str(tmp_path / "photos")] == "folder per class"


def test_audio_is_mono_and_resampled(tmp_path):
    import soundfile as sf

    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    sf.write(str(tmp_path / "a.wav"), stereo, 8000)
    audio = read_audio(tmp_path / "a.wav", 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5  # the same tone, at the new rate
    (tmp_path / "b.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(MediaError, match="unreadable audio"):
        read_audio(tmp_path / "b.wav", 16000)
