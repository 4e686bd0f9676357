"""Checkpoint directories and their manifest: the names, the schema, the reader, writer and check.

Layout of ``<checkpoint_dir>/step_000123/``: the tensor files (DCP's ``.metadata`` and
``__<rank>_0.distcp``; whatever wrote them, this module only hashes them) and ``manifest.json``.
A checkpoint is written as ``step_000123.tmp/`` and renamed once complete, so a directory
without ``.tmp`` whose hashes match is a whole checkpoint, and a ``.tmp`` one is a crash's leftover.

Hashing scales with the shard, not the model. At save, every rank hashes the files it wrote
(``rank_files``: DCP names them ``__<rank>_<i>.distcp``; rank 0 also hashes ``.metadata``) and
hands the hashes to rank 0 either through a collective or, from a background thread, as a small
``rank_NNNNN.hashes.json`` in the ``.tmp`` directory (``write_rank_hashes``/``read_rank_hashes``);
rank 0 writes them all into one manifest and removes the per-rank files. At verification, rank
``r`` of ``world`` hashes only the files ``owner(name, world) == r`` (``verify(rank=, world=)``);
the caller combines the ranks' reasons. The manifest is the same either way: old checkpoints,
hashed whole by rank 0, verify unchanged.

The manifest describes the checkpoint on its own, so eval and convert need nothing beside it:

- ``step`` (int, required): optimizer steps taken; names the directory.
- ``files`` (required): ``{relative path: sha256}`` of every other file in the directory.
- ``sizes`` (object): ``{relative path: bytes}`` of the same files, for checks that must not
  read them (``verify(..., hashes=False)``); checkpoints written before it have none.
- ``tokens`` (int): training tokens seen.
- ``config`` (object): the training config it was trained with.
- ``model_config`` (object): the model config's fields (``llm_model.ModelConfig``), enough
  to build the model the tensors belong to.
- ``tokenizer_card_sha256`` (str): the sha256 of the tokenizer card of the tokenizer it was
  trained with (the card also records when and how long it trained, so it names that training).
- ``tokenizer_sha256`` (str): the sha256 of its ``tokenizer.json``, so a tokenizer found
  elsewhere can be checked against it (a retrained identical tokenizer has the same one).
- ``scheduler`` (object): the LR scheduler's state.
- ``rank_states`` (list of objects): per rank, the data-loader position and RNG states.
- anything else the writer adds (counters, provenance, ...), kept as it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_json, fsync_dir, sha256_file

__all__ = [
    "MANIFEST",
    "STEP_GLOB",
    "TMP_SUFFIX",
    "ManifestError",
    "finalize",
    "hash_files",
    "manifest_model_config",
    "owner",
    "rank_files",
    "read_manifest",
    "read_rank_hashes",
    "stale_tmp_dirs",
    "step_dir_name",
    "step_dirs",
    "step_of",
    "tmp_dir",
    "validate_manifest",
    "verify",
    "write_manifest",
    "write_rank_hashes",
]

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"
# A glob for checkpoint directories (for "does one exist" checks): digits at both ends, so no
# ``.tmp``; ``step_dirs`` is the exact listing.
STEP_GLOB = "step_[0-9]*[0-9]"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# DCP's file system writer names rank r's files ``__<r>_<i>.distcp``.
_RANK_FILE = re.compile(r"^__(\d+)_\d+\.distcp$")
_RANK_HASHES = "rank_{rank:05d}.hashes.json"
# ... and the temporary name atomic_write_json writes it under (``.rank_00001.hashes.json.*``).
_RANK_HASHES_FILE = re.compile(r"^\.?rank_\d+\.hashes\.json")
# Optional fields and the JSON type each must have when present.
_TYPES: dict[str, tuple[type, ...]] = {
    "tokens": (int,),
    "config": (dict,),
    "model_config": (dict,),
    "tokenizer_card_sha256": (str,),
    "tokenizer_sha256": (str,),
    "scheduler": (dict,),
    "rank_states": (list,),
    "sizes": (dict,),
}


class ManifestError(ValueError):
    """A manifest that cannot be read or breaks the schema; the message names file and field."""


def step_dir_name(step: int) -> str:
    """``step_000123``: six digits at least, so names sort as steps do up to a million."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"checkpoint step must be an int >= 0, got {step!r}")
    return f"step_{step:06d}"


def step_of(path: str | os.PathLike) -> int | None:
    """The step a checkpoint directory's name gives, or None for any other name (``.tmp``)."""
    match = _STEP_DIR.match(Path(path).name)
    return int(match[1]) if match else None


def tmp_dir(final: str | os.PathLike) -> Path:
    """Where the checkpoint that becomes ``final`` is written until it is complete."""
    final = Path(final)
    return final.with_name(final.name + TMP_SUFFIX)


def step_dirs(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Every ``step_NNNNNN`` directory under ``checkpoint_dir``, valid or not, newest first;
    ``.tmp`` directories and other names are not checkpoints and are left out."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(dirs, key=step_of, reverse=True)


def stale_tmp_dirs(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """The ``step_NNNNNN.tmp`` directories a crash left under ``checkpoint_dir``."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir()
        if p.is_dir() and p.name.endswith(TMP_SUFFIX)
        and step_of(p.name.removesuffix(TMP_SUFFIX)) is not None
    )  # fmt: skip


def hash_files(directory: str | os.PathLike) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``directory`` but the manifest
    (one process hashing a whole checkpoint: for single-process writers and tests)."""
    root = Path(directory)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def owner(name: str, world: int) -> int:
    """The rank (of ``world``) that hashes file ``name``: rank r's ``__<r>_<i>.distcp`` is its
    writer's at the same world size (``r % world`` at another), everything else rank 0's."""
    match = _RANK_FILE.match(name)
    return int(match[1]) % world if match else 0


def rank_files(directory: str | os.PathLike, rank: int, world: int) -> dict[str, str]:
    """``{name: sha256}`` of the files directly in ``directory`` that ``owner`` gives ``rank``:
    after a save at ``world`` ranks, the files that rank wrote (and ``.metadata`` on rank 0)."""
    root = Path(directory)
    names = sorted(p.name for p in root.iterdir() if p.is_file())
    mine = [
        n for n in names if n != MANIFEST and not _is_rank_hashes(n) and owner(n, world) == rank
    ]
    return {name: sha256_file(root / name) for name in mine}


def _is_rank_hashes(name: str) -> bool:
    """A per-rank hash file, or the temporary file another rank is writing it through."""
    return _RANK_HASHES_FILE.match(name) is not None


def write_rank_hashes(tmp: str | os.PathLike, rank: int, files: dict[str, str]) -> Path:
    """Write rank ``rank``'s ``{name: sha256}`` into the ``.tmp`` checkpoint ``tmp`` (atomically:
    a reader sees all of it or no file) for rank 0's ``read_rank_hashes``."""
    path = Path(tmp) / _RANK_HASHES.format(rank=rank)
    return atomic_write_json(path, {"rank": rank, "files": files}, indent=None)


def read_rank_hashes(tmp: str | os.PathLike, world: int, timeout: float) -> dict[str, str]:
    """The ``write_rank_hashes`` of ranks 1 to ``world - 1`` in ``tmp`` merged (rank 0 reads
    them and has its own), waiting up to ``timeout`` seconds for the ranks still hashing; the
    per-rank files are removed once all are read.

    Raises:
        ManifestError: naming the rank whose file did not appear in time, or the file that
            does not follow the schema.
    """
    merged: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for rank in range(1, world):
        path = Path(tmp) / _RANK_HASHES.format(rank=rank)
        while not path.is_file():
            if time.monotonic() > deadline:
                raise ManifestError(
                    f"{path}: rank {rank} of {world} wrote no hashes of its checkpoint files "
                    f"within {timeout:g} s (it failed or is still writing)"
                )
            time.sleep(0.05)
        merged.update(_rank_hashes(path, rank))
    for rank in range(1, world):
        (Path(tmp) / _RANK_HASHES.format(rank=rank)).unlink()
    return merged


def _rank_hashes(path: Path, rank: int) -> dict[str, str]:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path}: cannot read rank {rank}'s hashes: {err}") from err
    files = content.get("files") if isinstance(content, dict) else None
    if not isinstance(files, dict) or content.get("rank") != rank:
        raise ManifestError(f"{path}: not rank {rank}'s hashes (expected rank and files)")
    for name, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ManifestError(f"{path}: field 'files.{name}' is not a sha256: {digest!r}")
    return files


def validate_manifest(manifest: Any, source: str | os.PathLike) -> dict:
    """``manifest`` if it follows the schema (module docstring), else ManifestError naming
    ``source`` and the field."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{source}: a manifest is a JSON object, got {type(manifest).__name__}")
    step = manifest.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ManifestError(f"{source}: field 'step' must be an int >= 0, got {step!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ManifestError(f"{source}: field 'files' must be an object of sha256 per file")
    for name, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ManifestError(f"{source}: field 'files.{name}' is not a sha256: {digest!r}")
    for field, types in _TYPES.items():
        value = manifest.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(t.__name__ for t in types)
            raise ManifestError(f"{source}: field {field!r} must be {expected}, got {value!r}")
    for name, size in manifest.get("sizes", {}).items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{source}: field 'sizes.{name}' must be an int >= 0: {size!r}")
    return manifest


def read_manifest(checkpoint: str | os.PathLike) -> dict:
    """The validated manifest of checkpoint directory ``checkpoint``."""
    path = Path(checkpoint) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError as err:
        raise ManifestError(f"{path}: cannot read it: {err}") from err
    except ValueError as err:
        raise ManifestError(f"{path}: not valid JSON: {err}") from err
    return validate_manifest(manifest, path)


def write_manifest(checkpoint: str | os.PathLike, fields: dict, files: dict[str, str]) -> Path:
    """Validate and write ``fields`` plus ``files`` (from ``hash_files`` or the ranks'
    ``read_rank_hashes``) and their sizes as the manifest of ``checkpoint``, atomically and
    durably; returns its path."""
    path = Path(checkpoint) / MANIFEST
    sizes = {name: (Path(checkpoint) / name).stat().st_size for name in files}
    manifest = validate_manifest({**fields, "files": files, "sizes": sizes}, path)
    return atomic_write_json(path, manifest, indent=1)


def verify(
    checkpoint: str | os.PathLike,
    required: tuple[str, ...] = (),
    *,
    rank: int = 0,
    world: int = 1,
    hashes: bool = True,
) -> str | None:
    """Why ``checkpoint`` is not usable, or None when its manifest reads, lists every file of
    ``required`` and every listed file exists with its recorded size and sha256.

    ``rank``/``world``: check only the files ``owner`` gives this rank (the caller gathers
    every rank's answer), so each rank reads its share, not the checkpoint. ``hashes=False``:
    presence and size only (``stat`` calls), for a checkpoint already verified when it was
    written or resumed; a corrupt byte of the same size passes it.
    """
    path = Path(checkpoint)
    try:
        manifest = read_manifest(path)
    except ManifestError as err:
        return f"unreadable {MANIFEST}: {err}"
    files, sizes = manifest["files"], manifest.get("sizes", {})
    for name in required:
        if name not in files:
            return f"manifest lists no {name} file"
    mine = files if not hashes else {n: d for n, d in files.items() if owner(n, world) == rank}
    for name, digest in mine.items():
        file = path / name
        if not file.is_file():
            return f"missing file {name}"
        size = file.stat().st_size
        if name in sizes and size != sizes[name]:  # no need to read it to know
            what = "sha256 mismatch" if hashes else "size mismatch"
            return f"{what} for {name}: {size} bytes, the manifest says {sizes[name]}"
        if hashes and sha256_file(file) != digest:
            return f"sha256 mismatch for {name}"
    return None


def finalize(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the complete ``tmp`` directory to ``final`` (replacing an older one), durably."""
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def manifest_model_config(manifest: dict, checkpoint: str | os.PathLike) -> dict:
    """The model config fields a checkpoint records; a clear error for one written before
    checkpoints recorded them."""
    fields = manifest.get("model_config")
    if fields is None:
        raise ManifestError(
            f"{Path(checkpoint) / MANIFEST}: no field 'model_config' (the checkpoint was written "
            "before manifests recorded the model config); add the run's `model:` section "
            "as 'model_config' to the manifest, or train it again"
        )
    return fields
