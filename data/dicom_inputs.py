"""Where DICOM bytes come from: files, folders (recursive), .zip archives and in-memory uploads.

Every source is turned into ``(name, bytes or None, skip reason or None)`` entries, one per file; .zip
archives (recognised by content, not by suffix) are expanded up to :data:`MAX_ZIP_DEPTH` levels deep and
:data:`MAX_ZIP_BYTES` uncompressed. Nothing is decoded here (see :mod:`data.dicom_frames`).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: Uncompressed size limit for the members of one .zip archive (bytes).
MAX_ZIP_BYTES = 4 * 1024**3
#: Archives nested deeper than this (a .zip in a .zip in a .zip) are not opened.
MAX_ZIP_DEPTH = 2

PathLike = str | os.PathLike
Upload = bytes | bytearray | memoryview | BinaryIO | Any
#: (name, file bytes or None, reason it was skipped or None).
Entry = tuple[str, bytes | None, str | None]


def is_zip(data: bytes) -> bool:
    """``data`` starts like a .zip archive (local file header or empty archive)."""
    return data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06"


def has_dicm(data: bytes) -> bool:
    """``data`` has the DICOM file marker ``DICM`` at byte 128."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def looks_like_bare_dataset(data: bytes) -> bool:
    """A DICOM data set written without preamble/file meta starts with a group 0x0008 (or 0x0002) tag."""
    return len(data) >= 8 and data[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00", b"\x00\x02")


def _expand_zip(name: str, data: bytes, depth: int) -> Iterator[Entry]:
    """Entries for the files of a zip archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield name, None, f"unreadable .zip archive ({exc})"
        return
    total = 0
    with archive:
        for info in infos:
            member = f"{name}/{info.filename}"
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                yield member, None, f"archive expands beyond {MAX_ZIP_BYTES // 1024**3} GiB; member ignored"
                continue
            try:
                content = archive.read(info)
            except (RuntimeError, zipfile.BadZipFile, OSError, NotImplementedError) as exc:
                yield member, None, f"cannot extract from archive ({exc})"
                continue
            yield from _expand(member, content, depth + 1)


def _expand(name: str, data: bytes, depth: int = 0) -> Iterator[Entry]:
    if not has_dicm(data) and is_zip(data):
        if depth >= MAX_ZIP_DEPTH:
            yield name, None, "nested .zip archive too deep; not opened"
            return
        yield from _expand_zip(name, data, depth)
    else:
        yield name, data, None


def iter_path(root: Path) -> Iterator[Entry]:
    """Entries for a file, or for every file under a folder (recursive, sorted by path).

    Parameters
    ----------
    root : an existing file or folder.

    Returns
    -------
    Iterator of ``(path, bytes or None, skip reason or None)``; .zip archives yield one entry per member,
    named ``<archive path>/<member>``. Unreadable files are entries with a reason, never exceptions.
    """
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield str(path), None, f"cannot read file ({exc.strerror or exc})"
            continue
        yield from _expand(str(path), data)


def _upload_bytes(content: Upload) -> bytes:
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if hasattr(content, "getvalue"):
        return bytes(content.getvalue())
    if hasattr(content, "read"):
        pos = content.tell() if hasattr(content, "seekable") and content.seekable() else None
        data = content.read()
        if pos is not None:
            content.seek(pos)
        return bytes(data)
    raise TypeError(f"expected bytes or a binary file-like object, got {type(content).__name__}")


def iter_uploads(items: Upload | Iterable[Upload | tuple[str, Upload]]) -> Iterator[Entry]:
    """Entries for uploads held in memory.

    Parameters
    ----------
    items : one upload or an iterable of them: ``bytes``, a binary file-like object (``.getvalue()`` or
        ``.read()``; its ``.name`` is used if present, else ``upload-<k>``) or a ``(name, bytes | file)`` tuple.

    Returns
    -------
    Iterator of ``(name, bytes or None, skip reason or None)`` as for :func:`iter_path`. Raises ``TypeError``
    for an item that is neither bytes nor file-like.
    """
    if isinstance(items, bytes | bytearray | memoryview) or hasattr(items, "read"):
        items = [items]
    for k, item in enumerate(items):
        if isinstance(item, tuple):
            name, content = item
        else:
            name, content = getattr(item, "name", None) or f"upload-{k + 1}", item
        yield from _expand(str(name), _upload_bytes(content))


__all__ = ["MAX_ZIP_BYTES", "MAX_ZIP_DEPTH", "Entry", "PathLike", "Upload", "has_dicm", "is_zip", "iter_path",
           "iter_uploads", "looks_like_bare_dataset"]
