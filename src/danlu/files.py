"""File modes of what danlu writes. safetensors (>= 0.6) writes each weight file through a private
temporary file and keeps its mode 0600, so a merged model or an adapter could not be read by
another user or a container's service account. Artefacts get the modes any file written with
open() would get: 0666 / 0777 less the process umask (0644 / 0755 with the usual 022)."""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def normal_modes(folder: str | Path) -> None:
    """Every file under `folder` 0666 & ~umask, every folder 0777 & ~umask (the folder included)."""
    folder = Path(folder)
    mask = current_umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if folder.is_file():
        os.chmod(folder, file_mode)
        return
    os.chmod(folder, dir_mode)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), dir_mode)
        for f in files:
            path = os.path.join(root, f)
            if not os.path.islink(path):
                os.chmod(path, file_mode)
