"""The download cache: one folder per artifact version, written whole or not at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_CACHE_DIR = Path("~/.cache/modelrouter")
COMPLETE = ".complete"
"""Marker written last: a folder without it is a download that did not finish."""


def digest(*parts: str) -> str:
    """A short stable name for a cache folder."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cached_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """``target`` once complete: reused when it already is, else ``fill`` writes a temporary
    folder beside it that is then renamed into place (so readers never see half a download)."""
    if (target / COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        (tmp / COMPLETE).touch()
        if (target / COMPLETE).is_file():  # another process finished first
            return target
        if target.exists():  # a download that was interrupted
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / COMPLETE).is_file():  # another process won the race with a whole copy
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def size_on_disk(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file): the memory a version is charged."""
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
