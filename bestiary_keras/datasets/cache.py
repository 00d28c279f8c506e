"""The data cache: where generated data lives (``cache_dir``) and atomic, leak-free saves.

Every cache file is written to a temporary file in the cache folder and renamed over its final
name in one step (``os.replace``), so a reader, or a second process writing the same file,
never sees half a file. Whatever interrupts the write (a full disk, Ctrl-C, an error while
compressing) removes the temporary file; temporary files left by a process that was killed
outright are swept by the next save once they are an hour old. Every cache file gets the same
mode, ``CACHE_FILE_MODE`` (0644: readable by everyone, as a shared cache should be).

``datasets.scenes`` (generated scenes) and ``detection.proposals`` (selective search) both save
through ``save_npz_atomic``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = [
    "CACHE_ENV",
    "CACHE_FILE_MODE",
    "cache_dir",
    "TEMPORARY_SUFFIX",
    "save_npz_atomic",
]

CACHE_ENV = "BESTIARY_CACHE"
"""Environment variable naming the cache folder (overrides ``data/cache/``)."""

CACHE_FILE_MODE = 0o644
"""Mode of every cache file (``mkstemp`` would leave 0600)."""

TEMPORARY_SUFFIX = ".tmp.npz"
"""Suffix of the temporary files a save writes before renaming (``tmp*.tmp.npz``)."""

_TEMPORARY_PREFIX = "tmp"


def cache_dir() -> Path:
    """Where generated data (scenes, figures, video, proposals) is cached.

    ``$BESTIARY_CACHE`` if set, else the repository's ``data/cache/`` when the package runs
    from a writable checkout (git-ignored), else ``~/.cache/bestiary_keras``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    repo_data = Path(__file__).resolve().parents[2] / "data"
    if repo_data.is_dir() and os.access(repo_data, os.W_OK):
        return repo_data / "cache"
    return Path.home() / ".cache" / "bestiary_keras"


_STALE_SECONDS = 3600.0


def _remove_stale_temporaries(folder: Path, older_than: float = _STALE_SECONDS) -> None:
    """Deletes temporary files of saves that were killed before they could clean up.

    Only files older than ``older_than`` seconds go: a younger one may be another process's
    save in progress.
    """
    now = time.time()
    for stale in folder.glob(f"{_TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if now - stale.stat().st_mtime > older_than:
                stale.unlink()


def save_npz_atomic(path, **arrays) -> bool:
    """Saves ``arrays`` to ``path`` as a compressed ``.npz``, atomically, with mode 0644.

    Args:
        path: the cache file to write (its folder is created if needed).
        **arrays: the arrays, as for ``np.savez_compressed``.

    Returns:
        True when the file was written, False when the cache cannot be written (an ``OSError``:
        read-only folder, full disk). A cache that cannot be written is not an error: the
        caller has its data anyway and computes it again next time.

    Any other exception (``KeyboardInterrupt`` included) is raised again, after the temporary
    file was deleted; in every case no temporary file stays behind.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path.parent)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=_TEMPORARY_PREFIX,
                                         suffix=TEMPORARY_SUFFIX)
        with os.fdopen(fd, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.chmod(temporary, CACHE_FILE_MODE)
        os.replace(temporary, path)  # atomic: parallel writers never see half a file
        temporary = None
        return True
    except OSError:
        return False
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
