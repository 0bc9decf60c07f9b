"""Crash-safe checkpoints under RUN_DIR/checkpoints/step-N/.

A save writes everything into a temporary folder, flushes every file, renames the folder into
place, and only then writes the COMPLETE marker (a manifest of every file's size and hash).
A folder without its marker is never loaded and is removed at the next start; a file whose
size or hash no longer matches the manifest makes danlu fall back to the previous checkpoint,
naming the file. Rotation deletes old checkpoints only after a new one is complete, and never
the newest or the best."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from danlu.errors import DanluError, UserError

log = logging.getLogger(__name__)
MARKER = "COMPLETE"
STEP_RE = re.compile(r"^step-(\d+)$")
HASH_LIMIT = 256 * 2**20  # hash files up to this size; larger ones are checked by size


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(path: Path) -> int:
    m = STEP_RE.match(path.name)
    return int(m.group(1)) if m else -1


def temp_dir(run_dir: Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f".tmp-step-{step}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def manifest(root: Path) -> dict[str, dict]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MARKER:
            size = p.stat().st_size
            entry = {"size": size}
            if size <= HASH_LIMIT:
                entry["sha256"] = _sha256(p)
            files[str(p.relative_to(root))] = entry
    return files


def finalize(tmp: Path, final: Path, step: int, before_marker=None) -> None:
    """Flush `tmp`, rename it to `final`, then write the marker (atomically, last)."""
    from danlu.files import normal_modes

    normal_modes(tmp)  # safetensors leaves its files 0600
    _fsync_tree(tmp)
    if final.exists():  # a stale folder of the same step (no marker, or re-saved): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    if before_marker is not None:
        before_marker()
    marker = {"step": step, "time": time.time(), "files": manifest(final)}
    part = final / (MARKER + ".part")
    with open(part, "w", encoding="utf-8") as fh:
        json.dump(marker, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(part, final / MARKER)
    _fsync_dir(final)


def verify(path: Path) -> str | None:
    """None if the checkpoint is complete and intact, else the reason (naming the file)."""
    marker = path / MARKER
    if not marker.is_file():
        return f"{path} has no {MARKER} marker (an interrupted save)"
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return f"{marker} is unreadable"
    for rel, entry in files.items():
        f = path / rel
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != entry["size"]:
            return f"{f} has {f.stat().st_size} bytes, expected {entry['size']} (truncated or altered)"
        if "sha256" in entry and _sha256(f) != entry["sha256"]:
            return f"{f} does not match its recorded hash (altered after the save)"
    extra = [p.name for p in path.iterdir() if p.is_file() and p.name != MARKER and p.name not in files]
    if extra:
        return f"{path} holds files the save did not write: {', '.join(extra)}"
    return None


def complete_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) >= 0 and (p / MARKER).is_file()]
    return sorted(found, key=step_of)


def latest_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; each one skipped is named in a warning."""
    for ckpt in reversed(complete_checkpoints(run_dir)):
        problem = verify(ckpt)
        if problem is None:
            return ckpt
        log.warning("skipping checkpoint %s: %s; falling back to the previous one", ckpt.name, problem)
    return None


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Remove temporary folders and marker-less checkpoints of interrupted saves."""
    root = checkpoints_dir(run_dir)
    removed = []
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-") or (step_of(p) >= 0 and not (p / MARKER).is_file())):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        log.warning("removed %d incomplete checkpoint folder(s) from an interrupted save: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def rotate(run_dir: Path, limit: int | None, best: Path | None = None) -> list[Path]:
    """Keep the newest `limit` complete checkpoints (and the best); delete older ones."""
    if not limit:
        return []
    ckpts = complete_checkpoints(run_dir)
    keep = set(ckpts[-limit:])
    if best is not None:
        keep.add(Path(best))
    removed = []
    for p in ckpts:
        if p not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def disk_full_error(exc: BaseException, path: Path, needed_bytes: int | None) -> DanluError | None:
    """A full disk while writing checkpoint `path` (OSError or a wrapped one) → an exit-2 error."""
    from danlu.diskspace import disk_full_error as full, is_disk_full

    if not is_disk_full(exc, path):
        return None
    return full(path, needed_bytes, "checkpoint",
                "The last complete checkpoint is intact. Free space (or lower train.save_total_limit), then resume.")


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    """`auto` → the latest good checkpoint (None if there is none); a path → that checkpoint."""
    if not resume or resume == "never":
        return None
    if resume == "auto":
        found = latest_good_checkpoint(run_dir)
        if found is None and complete_checkpoints(run_dir):
            problems = "; ".join(filter(None, (verify(p) for p in complete_checkpoints(run_dir))))
            raise UserError(
                f"no intact checkpoint to resume from in {checkpoints_dir(run_dir)}: {problems}",
                where="train.resume",
                hint="restore the files from a trusted copy, or start over with --overwrite",
            )
        return found
    path = Path(resume)
    problem = verify(path) if path.is_dir() else f"{path} does not exist"
    if problem:
        raise UserError(f"cannot resume from {path}: {problem}", where="train.resume")
    return path
