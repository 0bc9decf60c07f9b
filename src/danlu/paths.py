"""Where danlu keeps its own files (builtin models, caches): $DANLU_HOME or ~/.cache/danlu."""

from __future__ import annotations

import os
from pathlib import Path


def danlu_home() -> Path:
    home = Path(os.environ.get("DANLU_HOME") or Path.home() / ".cache" / "danlu")
    home.mkdir(parents=True, exist_ok=True)
    return home
