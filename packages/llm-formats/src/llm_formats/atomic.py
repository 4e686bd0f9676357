"""Atomic writes and file hashes, the one implementation every writer of a seam uses.

A file is written to a temporary name in its own folder, flushed and fsynced, renamed over the
target, and the folder is fsynced so the rename survives a power loss: a reader sees the old
file or the whole new one, never half of it. The temporary file is removed when the write
fails (disk full, an exception while serialising), so nothing half-written is left behind.

No write follows a symbolic link planted in a run directory: the temporary name is new
(``mkstemp`` creates it with ``O_EXCL``) and the rename replaces a link at the target rather
than writing through it; files appended to in place open with ``O_NOFOLLOW``
(``open_append``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir",
           "open_append", "sha256_file"]  # fmt: skip

_CHUNK = 1 << 20


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new file's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (with a final newline) atomically and durably; return the path.

    The object is serialised before the file is opened, so a value JSON cannot hold raises
    without touching the old file.
    """
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def open_append(path: str | os.PathLike, encoding: str = "utf-8"):
    """``open(path, "a")`` that refuses a symbolic link at ``path`` (an ``OSError`` naming it)
    instead of appending to whatever file outside the run the link points at."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if path.is_symlink():
            raise OSError(
                e.errno, f"{path} is a symbolic link; refusing to write through it (remove it)"
            ) from None
        raise
    return os.fdopen(fd, "a", encoding=encoding)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself was atomic
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
