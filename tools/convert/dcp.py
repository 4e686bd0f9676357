"""Read the model tensors of a DCP checkpoint one at a time, without loading the whole state.

DCP's metadata (``.metadata``) lists every tensor with its shape, dtype and the chunks each rank
wrote, and where each chunk lies in which ``__<rank>_0.distcp`` file. ``dcp.load`` copies every
chunk into a target tensor allocated beforehand, so one tensor costs twice its size there; here a
chunk is ``torch.load``-ed straight from its byte range of the file and, when it is the whole
tensor (a single-process checkpoint), returned as is, so one tensor costs its size once.
Checkpoints written with storage transforms (compression) go through ``dcp.load`` instead.
Both read ``.metadata`` with ``llm_train.safe_dcp``'s allow-list unpickler.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["DcpTensor", "model_tensors"]

PREFIX = "model."  # llm_train.checkpoint saves {"model": ..., "optim": ...}


@dataclass(frozen=True)
class DcpTensor:
    """One tensor of the checkpoint: shape, dtype and a loader that reads only it."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    load: Callable[[], torch.Tensor]


class _FileRange(io.RawIOBase):
    """A seekable read-only view of bytes [start, start + length) of an open file.

    Hand-written because torch.load needs a seekable file object and DCP's own view is private;
    ``readinto`` lets torch read storage bytes straight into the tensor, with no copy.
    """

    def __init__(self, file, start: int, length: int) -> None:
        self._file, self._start, self._length, self._pos = file, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = min(max(base + pos, 0), self._length)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._length - self._pos)
        if n <= 0:
            return 0
        self._file.seek(self._start + self._pos)
        got = self._file.readinto(view[:n])
        self._pos += got
        return got


def model_tensors(checkpoint: str | os.PathLike) -> dict[str, DcpTensor]:
    """Our state-dict names (``tok_emb.weight``, ...) -> lazily loaded tensors of ``checkpoint``.

    Only the model's tensors are listed (optimizer state is skipped); loading one opens only the
    files that hold its chunks.
    """
    from torch.distributed.checkpoint.metadata import MetadataIndex, TensorStorageMetadata

    from llm_train.safe_dcp import read_metadata

    checkpoint = Path(checkpoint)
    if not (checkpoint / ".metadata").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a DCP checkpoint (no .metadata file)")
    metadata = read_metadata(checkpoint)  # the allow-list unpickler: a crafted file runs nothing
    out = {}
    for fqn, md in metadata.state_dict_metadata.items():
        if not fqn.startswith(PREFIX) or not isinstance(md, TensorStorageMetadata):
            continue
        chunks = [c for c in md.chunks if all(c.sizes)]  # a rank may hold no rows of it
        infos = [metadata.storage_data[MetadataIndex(fqn, c.offsets)] for c in chunks]
        if any(getattr(i, "transform_descriptors", None) for i in infos):
            load = _dcp_load_fn(checkpoint, fqn, md)
        else:
            load = _chunks_load_fn(checkpoint, md, chunks, infos)
        out[fqn.removeprefix(PREFIX)] = DcpTensor(tuple(md.size), md.properties.dtype, load)
    if not out:
        raise ValueError(f"{checkpoint}/.metadata lists no tensors under {PREFIX!r}")
    return out


def _chunks_load_fn(checkpoint: Path, md, chunks, infos) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        parts = []
        for chunk, info in zip(chunks, infos, strict=True):
            with (checkpoint / info.relative_path).open("rb", buffering=0) as f:
                t = torch.load(
                    _FileRange(f, info.offset, info.length), map_location="cpu", weights_only=True
                )
            if tuple(chunk.offsets) == (0,) * len(md.size) and tuple(t.shape) == tuple(md.size):
                return t  # the whole tensor in one chunk: no second copy
            parts.append((chunk, t))
        full = torch.empty(tuple(md.size), dtype=md.properties.dtype)
        for chunk, t in parts:  # FSDP: one chunk per rank
            region = full
            for dim, (start, size) in enumerate(zip(chunk.offsets, chunk.sizes, strict=True)):
                region = region.narrow(dim, start, size)
            region.copy_(t)
        return full

    return load


def _dcp_load_fn(checkpoint: Path, fqn: str, md) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        from llm_train import safe_dcp

        target = torch.empty(tuple(md.size), dtype=md.properties.dtype)
        safe_dcp.load({fqn: target}, checkpoint, no_dist=True)
        return target

    return load
