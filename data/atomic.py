"""Atomic file writes: a temporary file, then one rename, so a reader never sees half a file.

The one helper every writer of sparsect uses (derived DICOM, PNG, NPZ, JSON, batch tables and markers).
The temporary file is created with ``os.open(..., 0o666)``, so the process umask decides the final mode
as it does for a plain ``open``: umask 022 gives 0644. ``tempfile.mkstemp`` would give 0600 whatever the
umask, which made outputs unreadable for the host user when written from a container under another UID.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: Suffix of temporary files; ``<dir>/.<name>.<random>.<pid>.part``: the pid tells a cleaner whose it is.
PART_SUFFIX = ".part"


def _create_temporary(directory: Path, name: str) -> tuple[int, Path]:
    while True:
        path = directory / f".{name}.{os.urandom(4).hex()}.{os.getpid()}{PART_SUFFIX}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def temporary_owner(path: str | os.PathLike) -> int | None:
    """The process id recorded in a temporary file's name, or None when it is not one of ours."""
    name = Path(path).name
    if not name.endswith(PART_SUFFIX):
        return None
    pid = name[: -len(PART_SUFFIX)].rsplit(".", 1)[-1]
    return int(pid) if pid.isdigit() else None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, temp_dir: str | os.PathLike | None = None) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing; it appears (replacing any old file) only when the block ends cleanly.

    Parameters
    ----------
    path : the final file; its folder is created if missing.
    temp_dir : folder for the temporary file (same file system as ``path``); default ``path``'s folder.
        Batch jobs keep theirs in a hidden state folder so that output folders never show ``.part`` files.

    On an exception (or Ctrl-C) inside the block the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(temp_dir) if temp_dir is not None else path.parent
    handle, temporary = _create_temporary(directory, path.name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, payload: bytes, temp_dir: str | os.PathLike | None = None) -> Path:
    """Write ``payload`` to ``path`` atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path, temp_dir) as stream:
        stream.write(payload)
    return Path(path)


__all__ = ["PART_SUFFIX", "atomic_open", "atomic_write", "temporary_owner"]
