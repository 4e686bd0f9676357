"""Reading DCP checkpoints without running code that a crafted checkpoint carries.

DCP reads ``.metadata`` with plain ``pickle.load`` and the non-tensor values of a state dict
(optimizer hyper-parameters) with ``torch.load(weights_only=False)``: either runs any callable a
file names. The manifest's sha256 does not help, since whoever ships a checkpoint ships its
manifest. So every checkpoint read goes through ``load`` (or ``read_metadata``) here: the
metadata unpickler resolves only the globals DCP's metadata is made of (``_ALLOWED``, found by
listing the globals of real checkpoints' metadata), and the non-tensor values load with
``weights_only=True`` (plain numbers, strings, tuples, lists, dicts, tensors). Anything else is
an ``UnsafeCheckpointError`` naming the file and the global.
"""

from __future__ import annotations

import io
import os
import pickle

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

__all__ = [
    "SafeFileSystemReader",
    "SafeFsspecReader",
    "SafeLoadPlanner",
    "UnsafeCheckpointError",
    "load",
    "read_metadata",
]

# module -> names the metadata pickle may resolve; torch dtypes (torch.float32, ...) come on top.
_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "Metadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch": {"Size"},
    "torch.serialization": {"_get_layout"},  # a name -> torch.strided, ...; calls nothing else
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint file names a global outside the allow-list: refused before it runs.

    A ``ValueError`` too (a bad input file), so the CLIs report it as they report a corrupt one.
    """


def _allowed(module: str, name: str) -> bool:
    if name in _ALLOWED.get(module, ()):
        return True
    return module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)


class _MetadataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``_ALLOWED`` globals (``find_class`` is the one
    place a pickle reaches code: every callable it invokes is looked up here first)."""

    def __init__(self, file, source: str | os.PathLike) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if _allowed(module, name):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self.source}: refusing to load global {module}.{name} (not one DCP metadata "
            "is made of; a crafted checkpoint can run code this way; see llm-train's README)"
        )


class SafeFileSystemReader(FileSystemReader):
    """``FileSystemReader`` whose ``read_metadata`` unpickles with the allow-list."""

    def read_metadata(self, *args, **kwargs) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as f:
            metadata = _MetadataUnpickler(f, path).load()
        if not isinstance(metadata, Metadata):
            raise UnsafeCheckpointError(f"{path}: holds a {type(metadata).__name__}, not Metadata")
        if getattr(metadata, "storage_meta", None) is None:  # as FileSystemReader does
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def _safe_reader(checkpoint: str | os.PathLike) -> FileSystemReader:
    """The allow-listed reader for ``checkpoint``: fsspec's for a URL (``s3://...``)."""
    if isinstance(checkpoint, str) and "://" in checkpoint:
        return SafeFsspecReader(checkpoint)
    return SafeFileSystemReader(checkpoint)


def _fsspec_reader() -> type[FileSystemReader]:
    from torch.distributed.checkpoint.fsspec_filesystem import FsspecReader

    return FsspecReader


try:  # fsspec is the [s3] extra's: without it only local checkpoints are read

    class SafeFsspecReader(_fsspec_reader()):
        """``FsspecReader`` (object storage) with ``SafeFileSystemReader``'s metadata check."""

        read_metadata = SafeFileSystemReader.read_metadata

except ImportError:  # pragma: no cover - exercised only without fsspec installed

    class SafeFsspecReader(SafeFileSystemReader):
        def __init__(self, path, **kwargs) -> None:
            raise ImportError(f"{path}: reading it needs fsspec: pip install 'llm-train[s3]'")


class SafeLoadPlanner(DefaultLoadPlanner):
    """``DefaultLoadPlanner`` that loads non-tensor values with ``weights_only=True``."""

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        super().__init__()
        self.checkpoint = checkpoint

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0]
            raise UnsafeCheckpointError(
                f"{self.checkpoint}: refusing to load value {fqn!r}: {first}"
            ) from None
        super().load_bytes(read_item, _saved(obj))


def _saved(obj) -> io.BytesIO:
    """``obj`` as ``torch.save`` bytes, for ``DefaultLoadPlanner.load_bytes`` to place where it
    belongs (its placing logic stays torch's; it loads them back, now known to be plain data)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def read_metadata(checkpoint: str | os.PathLike) -> Metadata:
    """The DCP metadata of checkpoint directory ``checkpoint``, read with the allow-list."""
    return _safe_reader(checkpoint).read_metadata()


def load(state: dict, checkpoint: str | os.PathLike, *, no_dist: bool) -> None:
    """``dcp.load(state, checkpoint_id=checkpoint)`` with the allow-list on every pickle read.

    The metadata is read once here first, so a refused global raises ``UnsafeCheckpointError``
    itself rather than inside DCP's ``CheckpointException``; one raised inside DCP (a value) is
    unwrapped for the same reason.
    """
    read_metadata(checkpoint)
    try:
        dcp.load(
            state,
            storage_reader=_safe_reader(checkpoint),
            planner=SafeLoadPlanner(checkpoint),
            no_dist=no_dist,
        )
    except CheckpointException as e:
        for failure, _ in e.failures.values():
            if isinstance(failure, UnsafeCheckpointError):
                raise failure from None
        raise
