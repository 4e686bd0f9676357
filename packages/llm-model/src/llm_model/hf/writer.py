"""The streaming writer of a Hugging Face checkpoint directory (sharded safetensors + configs).

``write_hf_checkpoint`` takes tensors as (name, shape, dtype, load) entries and writes each
safetensors file header first, then one tensor at a time, so a caller that loads tensors lazily
(``tools/convert`` from a DCP checkpoint) never holds the whole model. Files above
``shard_size`` are split as ``model-0000i-of-0000n.safetensors`` with
``model.safetensors.index.json``, the layout ``from_pretrained`` reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from llm_model.hf.weights import TensorEntry

__all__ = ["DEFAULT_SHARD_SIZE", "INDEX", "parse_size", "write_hf_checkpoint"]

DEFAULT_SHARD_SIZE = 5 * 10**9  # transformers' save_pretrained default ("5GB")
INDEX = "model.safetensors.index.json"

_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def parse_size(text: str | int) -> int:
    """Bytes in ``"5GB"``, ``"500MB"``, ``"2GiB"`` or a plain integer (transformers' units)."""
    if isinstance(text, int):
        return text
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    s = text.strip().upper()
    for unit, mult in units.items():
        if s.endswith(unit) and s[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(s[: -len(unit)]) * mult)
    if s.isdigit():
        return int(s)
    raise ValueError(f"size {text!r}: expected a number with KB/MB/GB/KiB/MiB/GiB, e.g. '5GB'")


def write_hf_checkpoint(
    path: str | os.PathLike,
    config: dict,
    entries: Iterable[TensorEntry],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a Hugging Face checkpoint directory atomically (a temporary directory, renamed).

    Args:
        path: Output directory (replaced if it exists).
        config: config.json contents (``hf_config``); its token ids also go into
            generation_config.json (pad = eos there when there is no pad token).
        entries: Tensors in file order.
        shard_size: Largest safetensors file in bytes (one tensor larger than this gets a
            file alone); one file is ``model.safetensors`` without an index.
        extra_files: More files to write, name -> contents (tokenizer files).

    Returns:
        ``path``.
    """
    entries = list(entries)
    _check_unique_names(entries)
    path = Path(path)
    with _replaced_atomically(path) as tmp:
        _write_weights(tmp, entries, shard_size)
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "generation_config.json", _generation_config(config))
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return path


def _check_unique_names(entries: list[TensorEntry]) -> None:
    """Refuse duplicates before writing: the later tensor would silently shadow the first."""
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate tensor names: {sorted({n for n in names if names.count(n) > 1})}"
        )


@contextlib.contextmanager
def _replaced_atomically(path: Path) -> Iterator[Path]:
    """A temporary directory next to ``path`` that replaces it on success, removed on failure.

    So a reader never sees a half-written checkpoint, and a failed export leaves the old one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_weights(folder: Path, entries: list[TensorEntry], shard_size: int) -> None:
    """The safetensors files of ``entries``, and the index that maps names to them if several."""
    shards = _plan_shards(entries, shard_size)
    files = ["model.safetensors"] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]  # fmt: skip
    for name, shard in zip(files, shards, strict=True):
        _write_safetensors(folder / name, shard)
    if len(shards) > 1:
        weight_map = {
            e.name: name for name, shard in zip(files, shards, strict=True) for e in shard
        }
        index = {
            "metadata": {"total_size": sum(e.nbytes for e in entries)},
            "weight_map": weight_map,
        }
        _write_json(folder / INDEX, index)


def _generation_config(config: dict) -> dict:
    """generation_config.json: the special-token ids of config.json."""
    generation = {k: config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    if generation["pad_token_id"] is None:  # batched generate() pads finished rows with it
        generation["pad_token_id"] = generation["eos_token_id"]
    return generation


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _plan_shards(entries: list[TensorEntry], shard_size: int) -> list[list[TensorEntry]]:
    """Consecutive groups of at most shard_size bytes (a bigger tensor gets a file alone)."""
    shards: list[list[TensorEntry]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + e.nbytes > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e.nbytes
    return shards


def _write_safetensors(path: Path, entries: list[TensorEntry]) -> None:
    """A safetensors file written header first, then tensor by tensor.

    Hand-written because safetensors' save_file takes every tensor of the file at once; the
    format (8-byte little-endian header length, JSON header, raw little-endian data) is fixed.
    """
    header = _safetensors_header(entries)
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for e in entries:
            t = e.load()
            if tuple(t.shape) != e.shape:
                raise ValueError(f"{e.name}: loaded shape {tuple(t.shape)}, expected {e.shape}")
            t = t.detach().to("cpu", e.dtype).contiguous()
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t
        f.flush()
        os.fsync(f.fileno())


def _safetensors_header(entries: list[TensorEntry]) -> bytes:
    """The JSON header (dtype, shape, byte range per tensor), padded to 8 bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for e in entries:
        if e.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{e.name}: dtype {e.dtype} has no safetensors code")
        header[e.name] = {
            "dtype": _SAFETENSORS_DTYPES[e.dtype],
            "shape": list(e.shape),
            "data_offsets": [offset, offset + e.nbytes],
        }
        offset += e.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it
