"""Shards in object storage: a finished local shards folder uploaded to ``s3://...`` (extra [s3]).

`tokenize_to_shards(out_dir="s3://bucket/run/shards")` builds the shards in a local staging
folder as it would on disk, then `upload` copies them. An object store has no atomic rename of a
prefix, so ``shard_stats.json``, the file the loader reads first and refuses to go without, is
the commit marker: it is removed first and uploaded last, in one PUT, after every other file
was uploaded and its size checked in the store's listing. A prefix without it is not shards
(the loader says "holds no complete shards"), whatever else it holds.

Resuming. A PUT is atomic (an object exists whole or not at all), so a dropped upload leaves
only missing objects. ``_UPLOADING``, written first, names the staged folder being uploaded (its
fingerprint); a rerun that finds the same fingerprint keeps the objects already there at their
local size and uploads the rest; a different one (or none) clears the prefix first, so no object
of an older output survives into the new one.

Credentials and the endpoint come from the environment only (read by botocore); transient errors
are retried by botocore (``AWS_MAX_ATTEMPTS``) and s3fs; one that persists raises `UploadError`
naming the object.
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path
from typing import Any

from llm_formats.shards import SHARD_STATS_FILE

__all__ = ["UploadError", "committed", "filesystem", "is_url", "upload"]

log = logging.getLogger(__name__)
_UPLOADING = "_uploading"  # marker object during an upload: the staged folder's fingerprint


class UploadError(OSError):
    """An upload to object storage failed (after the clients' retries); names the object."""


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names object storage (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; a clear error without the extra."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url)
    except ImportError as err:  # fsspec names the missing backend (s3fs)
        raise ImportError(f"{url}: {err}; pip install 'llm-data[s3]'") from err


def committed(url: str) -> bool:
    """Whether ``url`` holds committed shards (its ``shard_stats.json`` exists)."""
    fs, root = filesystem(url)
    fs.invalidate_cache(root)  # decide from the store, not from an earlier listing
    return fs.exists(posixpath.join(root, SHARD_STATS_FILE))


def upload(local: Path, url: str, fingerprint: str) -> None:
    """Copy the finished shards folder ``local`` to ``url``, ``shard_stats.json`` last.

    Args:
        local: a complete output of `tokenize_to_shards` on local disk.
        url: the destination prefix (``s3://bucket/run/shards``).
        fingerprint: what ``local`` was built from; a rerun with the same one resumes.

    Raises:
        UploadError: naming the object whose upload failed, or whose size the store reports
            wrong; ``url`` then has no ``shard_stats.json``.
    """
    fs, root = filesystem(url)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    names = [p.relative_to(local).as_posix() for p in files]
    present = _begin(fs, root, url, fingerprint)
    for path, name in zip(files, names, strict=True):
        if name == SHARD_STATS_FILE:
            continue
        if present.get(name) == path.stat().st_size:
            continue  # uploaded whole by the run that was cut off
        _put(fs, path, posixpath.join(root, name), url)
    _check_sizes(fs, root, url, files, names)
    _put(fs, local / SHARD_STATS_FILE, posixpath.join(root, SHARD_STATS_FILE), url)  # commit
    fs.rm_file(posixpath.join(root, _UPLOADING))
    log.info("uploaded %d files to %s", len(files), url)


def _begin(fs, root: str, url: str, fingerprint: str) -> dict[str, int]:
    """Uncommit ``root`` and mark the upload; returns the objects an interrupted upload of the
    same fingerprint left (name -> size), or clears the prefix for a new one."""
    marker = posixpath.join(root, _UPLOADING)
    fs.invalidate_cache(root)
    try:
        if fs.exists(posixpath.join(root, SHARD_STATS_FILE)):
            fs.rm_file(posixpath.join(root, SHARD_STATS_FILE))  # no longer shards, from now on
        same = fs.exists(marker) and fs.cat_file(marker).decode() == fingerprint
        if not same and fs.exists(root):
            log.info("%s holds other files: clearing it before the upload", url)
            fs.rm(root, recursive=True)
        fs.pipe_file(marker, fingerprint.encode())
        fs.invalidate_cache(root)
        listing = fs.find(root, detail=True) if same else {}
    except OSError as err:
        raise UploadError(f"preparing {url} for the upload failed: {err}") from err
    prefix = root.rstrip("/") + "/"
    return {key.removeprefix(prefix): info["size"] for key, info in listing.items()}


def _put(fs, path: Path, key: str, url: str) -> None:
    try:
        fs.put_file(str(path), key)
    except Exception as err:  # botocore/aiohttp errors are not all OSErrors
        raise UploadError(
            f"uploading {path} to {fs.unstrip_protocol(key)} failed: {err}; {url} has no "
            f"{SHARD_STATS_FILE}, so it is not taken as shards: run again to resume the upload"
        ) from err


def _check_sizes(fs, root: str, url: str, files: list[Path], names: list[str]) -> None:
    """Every uploaded object at its local size, as the store lists it (before the commit)."""
    fs.invalidate_cache(root)
    prefix = root.rstrip("/") + "/"
    listed = {k.removeprefix(prefix): i["size"] for k, i in fs.find(root, detail=True).items()}
    for path, name in zip(files, names, strict=True):
        if name != SHARD_STATS_FILE and listed.get(name) != path.stat().st_size:
            raise UploadError(
                f"{url}/{name}: the store holds {listed.get(name)} bytes, {path} has "
                f"{path.stat().st_size}; not committed ({SHARD_STATS_FILE} not written)"
            )
