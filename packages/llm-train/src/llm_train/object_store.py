"""Checkpoints in object storage (``s3://bucket/run/checkpoints``, or any fsspec URL).

``llm_train.checkpoint`` calls these functions for a checkpoint directory given as a URL; the
names and the manifest's schema stay ``llm_formats.checkpoint``'s (which is stdlib-only, so
the fsspec parts live here). Needs the ``llm-train[s3]`` extra (fsspec + s3fs).

Commit scheme. An object store has no atomic rename of a prefix (S3's "rename" copies and
deletes object by object), so a checkpoint is written straight into its final prefix
``step_NNNNNN/`` and the manifest is its commit marker: it is one object, written last, with
one PUT (atomic: a reader sees all of it or none), and only after every file it lists was
written and hashed. A prefix without a manifest, or whose files do not match it, is a crash's
leftover, never taken as done (``verify`` says why); ``begin`` deletes the old manifest before
anything else when a step is written again, and ``remove_incomplete`` deletes prefixes
without a manifest. Every rank hashes the files it wrote by reading them back (the sha256 of
what the store holds, not of what was meant to be sent), so a verification here is also a
check of the upload.

Credentials and the endpoint come from the environment only (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION``),
read by botocore; nothing here logs or records them.

Transient errors (a dropped connection) are retried by botocore (``AWS_MAX_ATTEMPTS``) and
s3fs; one that persists raises ``CheckpointError`` naming the object (``checkpoint._discard``).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from typing import Any

from llm_formats import checkpoint as formats

__all__ = [
    "begin",
    "filesystem",
    "hash_files",
    "is_url",
    "join",
    "read_manifest",
    "remove",
    "remove_incomplete",
    "step_dirs",
    "verify",
    "write_manifest",
]

_CHUNK = 8 << 20  # bytes read at a time when hashing: one S3 range request each


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names object storage (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; a clear error without the extra."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as err:
        raise ImportError(
            f"{url}: checkpoints in object storage need fsspec and s3fs: "
            "pip install 'llm-train[s3]'"
        ) from err
    return url_to_fs(url)


def join(url: str, *names: str) -> str:
    """``url`` with ``names`` appended, keeping the ``scheme://`` (``Path`` would drop a /)."""
    return posixpath.join(url.rstrip("/"), *names)


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def step_dirs(checkpoint_dir: str) -> list[str]:
    """Every ``step_NNNNNN`` prefix under ``checkpoint_dir``, valid or not, newest first."""
    fs, root = filesystem(checkpoint_dir)
    try:
        entries = fs.ls(root, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    steps = [(formats.step_of(_name(e)), _name(e)) for e in entries]
    return [join(checkpoint_dir, n) for s, n in sorted(steps, reverse=True) if s is not None]


def begin(final: str) -> None:
    """Rank 0, before writing checkpoint ``final``: remove its manifest first (so the prefix is
    never a committed checkpoint over a mix of old and new files), then whatever else is there."""
    fs, path = filesystem(final)
    fs.invalidate_cache(path)  # decide from the store, not from an earlier listing
    manifest = posixpath.join(path, formats.MANIFEST)
    if fs.exists(manifest):
        fs.rm(manifest)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.invalidate_cache(path)


def remove(checkpoint: str) -> None:
    """Delete checkpoint prefix ``checkpoint``, manifest first (it stops being a checkpoint
    before any of its files goes)."""
    begin(checkpoint)


def remove_incomplete(checkpoint_dir: str) -> list[str]:
    """Delete the ``step_NNNNNN`` prefixes without a manifest (a crash's or failed save's
    leftovers); returns them."""
    removed = []
    for checkpoint in step_dirs(checkpoint_dir):
        fs, path = filesystem(checkpoint)
        fs.invalidate_cache(path)  # a stale listing must never delete a committed checkpoint
        if not fs.exists(posixpath.join(path, formats.MANIFEST)):
            fs.rm(path, recursive=True)
            removed.append(checkpoint)
    return removed


def _sha256(fs: Any, path: str) -> tuple[str, int]:
    """(sha256, size) of object ``path``, streamed: memory stays one chunk."""
    digest, size = hashlib.sha256(), 0
    with fs.open(path, "rb", block_size=_CHUNK) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def hash_files(checkpoint: str, rank: int, world: int) -> dict[str, list]:
    """``{name: [sha256, size]}`` of the files directly in ``checkpoint`` that
    ``formats.owner`` gives ``rank``: after a save, the ones it wrote (``.metadata``: rank 0)."""
    fs, path = filesystem(checkpoint)
    fs.invalidate_cache(path)
    names = sorted(_name(e) for e in fs.ls(path, detail=False, refresh=True))
    mine = [n for n in names if n != formats.MANIFEST and formats.owner(n, world) == rank]
    return {n: list(_sha256(fs, posixpath.join(path, n))) for n in mine}


def write_manifest(checkpoint: str, fields: dict, files: dict[str, list]) -> str:
    """Validate and write the manifest of ``checkpoint`` (``files``: the ranks' ``hash_files``
    merged) as one object: the commit marker. Returns its URL."""
    url = join(checkpoint, formats.MANIFEST)
    digests = {name: digest for name, (digest, _) in files.items()}
    sizes = {name: size for name, (_, size) in files.items()}
    manifest = formats.validate_manifest({**fields, "files": digests, "sizes": sizes}, url)
    fs, path = filesystem(url)
    fs.pipe_file(path, json.dumps(manifest, indent=1).encode())
    return url


def read_manifest(checkpoint: str) -> dict:
    """The validated manifest of checkpoint ``checkpoint``."""
    url = join(checkpoint, formats.MANIFEST)
    fs, path = filesystem(url)
    # s3fs answers from its cached listing of the prefix, which this rank may have taken before
    # rank 0 wrote the manifest (hash_files lists the prefix): "not found" without asking.
    fs.invalidate_cache(posixpath.dirname(path))
    try:
        manifest = json.loads(fs.cat_file(path))
    except (OSError, FileNotFoundError) as err:
        raise formats.ManifestError(f"{url}: cannot read it: {err}") from err
    except ValueError as err:
        raise formats.ManifestError(f"{url}: not valid JSON: {err}") from err
    return formats.validate_manifest(manifest, url)


def verify(
    checkpoint: str,
    required: tuple[str, ...] = (),
    *,
    rank: int = 0,
    world: int = 1,
    hashes: bool = True,
) -> str | None:
    """``llm_formats.checkpoint.verify`` for a checkpoint in object storage: why it is not
    usable, or None. ``hashes=False`` compares sizes from the listing alone (no reads)."""
    try:
        manifest = read_manifest(checkpoint)
    except formats.ManifestError as err:
        return f"unreadable {formats.MANIFEST}: {err}"
    files, sizes = manifest["files"], manifest.get("sizes", {})
    for name in required:
        if name not in files:
            return f"manifest lists no {name} file"
    fs, path = filesystem(checkpoint)
    listing = {_name(e["name"]): e["size"] for e in fs.ls(path, detail=True, refresh=True)}
    mine = {n: d for n, d in files.items() if not hashes or formats.owner(n, world) == rank}
    for name, digest in mine.items():
        if name not in listing:
            return f"missing file {name}"
        if name in sizes and listing[name] != sizes[name]:
            what = "sha256 mismatch" if hashes else "size mismatch"
            return f"{what} for {name}: {listing[name]} bytes, the manifest says {sizes[name]}"
        if hashes and _sha256(fs, posixpath.join(path, name))[0] != digest:
            return f"sha256 mismatch for {name}"
    return None
