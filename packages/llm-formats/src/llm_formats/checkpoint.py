"""Checkpoint directories and their manifest: the names, the schema, the reader, writer and check.

Layout of ``<checkpoint_dir>/step_000123/``: the tensor files (DCP's ``.metadata`` and
``__<rank>_0.distcp``; whatever wrote them, this module only hashes them) and ``manifest.json``.
A checkpoint is written as ``step_000123.tmp/`` and renamed once complete, so a directory
without ``.tmp`` whose hashes match is a whole checkpoint, and a ``.tmp`` one is a crash's leftover.

The manifest describes the checkpoint on its own, so eval and convert need nothing beside it:

- ``step`` (int, required): optimizer steps taken; names the directory.
- ``files`` (required): ``{relative path: sha256}`` of every other file in the directory.
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
    "read_manifest",
    "stale_tmp_dirs",
    "step_dir_name",
    "step_dirs",
    "step_of",
    "tmp_dir",
    "validate_manifest",
    "verify",
    "write_manifest",
]

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"
# A glob for checkpoint directories (for "does one exist" checks): digits at both ends, so no
# ``.tmp``; ``step_dirs`` is the exact listing.
STEP_GLOB = "step_[0-9]*[0-9]"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Optional fields and the JSON type each must have when present.
_TYPES: dict[str, tuple[type, ...]] = {
    "tokens": (int,),
    "config": (dict,),
    "model_config": (dict,),
    "tokenizer_card_sha256": (str,),
    "tokenizer_sha256": (str,),
    "scheduler": (dict,),
    "rank_states": (list,),
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
    """``{relative posix path: sha256}`` of every file under ``directory`` but the manifest."""
    root = Path(directory)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


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
    """Validate and write ``fields`` plus ``files`` (from ``hash_files``) as the manifest of
    ``checkpoint``, atomically and durably; returns its path."""
    path = Path(checkpoint) / MANIFEST
    manifest = validate_manifest({**fields, "files": files}, path)
    return atomic_write_json(path, manifest, indent=1)


def verify(checkpoint: str | os.PathLike, required: tuple[str, ...] = ()) -> str | None:
    """Why ``checkpoint`` is not usable, or None when its manifest reads, lists every file of
    ``required`` and every listed file exists with its recorded sha256."""
    path = Path(checkpoint)
    try:
        files = read_manifest(path)["files"]
    except ManifestError as err:
        return f"unreadable {MANIFEST}: {err}"
    for name in required:
        if name not in files:
            return f"manifest lists no {name} file"
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            return f"missing file {name}"
        if sha256_file(file) != digest:
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
