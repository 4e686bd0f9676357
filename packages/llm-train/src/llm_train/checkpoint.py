"""Checkpoints: DCP directories of model + optimizer state, plus a manifest, written atomically.

This module makes the DCP calls; the directory's names, the manifest's schema, its reader,
writer and the hash check are ``llm_formats.checkpoint``'s. A checkpoint holds DCP's
``.metadata`` and ``__<rank>_0.distcp`` files and the manifest: the step, the caller's fields
(tokens, config, model config, tokenizer card hash, scheduler state, ...), one entry per rank in
``rank_states`` (data-loader position, RNG states), provenance, and the sha256 of every other file.

Hashing is per rank, so its cost on a rank follows its shard, not the model: at save every rank
hashes the files it wrote (an asynchronous save in its background thread, after the write) and
rank 0 writes all the hashes into the manifest; at resume every rank checks its share of the
files and the ranks agree on the newest checkpoint all of them found valid. Pruning never reads
old checkpoints again: they were hashed when written or resumed, so presence and size suffice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import posixpath
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from llm_formats import checkpoint as formats
from llm_train import object_store
from llm_train.provenance import provenance

# torch.distributed.checkpoint is imported inside the functions that use it: it pulls in DTensor
# and takes seconds to import, which `import llm_train` (e.g. for TrainConfig) should not pay.

__all__ = [
    "CheckpointError",
    "PendingCheckpoint",
    "async_save_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_weights",
    "location",
    "read_checkpoint_manifest",
    "remove_checkpoints",
    "remove_stale_tmp",
    "save_checkpoint",
    "verify_checkpoint",
]

log = logging.getLogger(__name__)
MANIFEST = formats.MANIFEST  # kept: a public name of this module before llm_formats had it
# How long rank 0's finisher waits for the other ranks' hashes of an asynchronous save: they
# hash their own shard after their write, so a rank still missing after this failed or hung.
RANK_HASH_TIMEOUT_S = 600.0


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be resumed from; the message names them and why."""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _world() -> int:
    return dist.get_world_size() if _distributed() else 1


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns that it "assumes single process" even with ``no_dist=True``; that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def location(path: str | Path) -> Path | str:
    """A checkpoint path as these functions take it: a URL stays a string (``Path`` would turn
    ``s3://b`` into ``s3:/b``), anything else becomes a ``Path``."""
    return path if object_store.is_url(path) else Path(path)


def _store(path: Path | str):
    """The module that lists, verifies and reads manifests at ``path``: ``object_store`` for a
    URL, ``llm_formats.checkpoint`` for a local path (the same function names)."""
    return object_store if object_store.is_url(path) else formats


def save_checkpoint(
    checkpoint_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    manifest: dict,
    rank_state: dict,
    keep: int = 0,
) -> Path:
    """Save model and optimizer with DCP and write the manifest; collective under distributed.

    Args:
        checkpoint_dir: Parent directory (shared by all ranks).
        step: Number of optimizer steps taken; names the directory (``step_dir_name``).
        model: Plain or FSDP2-sharded module.
        optimizer: Its optimizer.
        manifest: JSON-able fields recorded by rank 0 (tokens, config, scheduler state, ...).
        rank_state: JSON-able per-rank state (data-loader position, RNG), gathered to rank 0.
        keep: After saving, keep the newest ``keep`` intact checkpoints (``_prune``); 0 keeps all.

    Returns:
        The final checkpoint directory.
    """
    import torch.distributed.checkpoint as dcp

    if object_store.is_url(checkpoint_dir):
        return _save_remote(checkpoint_dir, step, model, optimizer, manifest, rank_state, keep)
    final, tmp = _begin(Path(checkpoint_dir), step)
    state = _state(model, optimizer)
    try:
        with _single_process_quiet():
            dcp.save(state, checkpoint_id=tmp, no_dist=not _distributed())
    except _write_errors() as err:  # every rank: DCP reports one rank's failure on all
        raise _discard(tmp, final, err) from None
    gathered = _gather({"state": rank_state, "files": _own_hashes(tmp)})
    if _rank() == 0:
        files = {name: digest for g in gathered for name, digest in g["files"].items()}
        fields = {**manifest, "step": step, "rank_states": [g["state"] for g in gathered]}
        _finish(tmp, final, fields, files, keep)
    _barrier()
    log.info("saved checkpoint %s", final)
    return final


class PendingCheckpoint:
    """An asynchronous save in flight; ``wait()`` (collective) returns once it is final.

    The state was copied to CPU memory before ``async_save_checkpoint`` returned, so training
    may go on changing the weights. The files are written in a background thread; then, in
    another thread on every rank, each rank hashes the files it wrote into a per-rank hash file
    (a file, not a collective: a background thread's collective could interleave with
    training's), and rank 0 waits for all of them, writes the manifest and renames the
    directory: until then the checkpoint is a ``.tmp`` directory that resume ignores.
    """

    def __init__(self, final: Path, future, finisher: threading.Thread | None) -> None:
        self.final, self._future, self._finisher = final, future, finisher
        self._error: BaseException | None = None

    def _finish_after_write(self, tmp: Path, manifest: dict, keep: int, world: int) -> None:
        try:
            self._future.result()
        except _write_errors() as err:  # re-raised by wait() on the training thread
            self._error = _discard(tmp, self.final, err)
            return
        try:
            own = _own_hashes(tmp)
            if _rank() != 0:
                formats.write_rank_hashes(tmp, _rank(), own)
                return
            others = formats.read_rank_hashes(tmp, world, RANK_HASH_TIMEOUT_S)
            _finish(tmp, self.final, manifest, {**own, **others}, keep)
        except BaseException as e:
            self._error = e

    def wait(self, *, collective: bool = True, timeout: float | None = None) -> Path:
        """Block until the save is final. ``collective=False`` (after an error on this rank):
        no barrier, and give up after ``timeout`` seconds (a peer may be gone)."""
        try:
            self._future.result(timeout=timeout)
        except _write_errors() as err:  # the finisher (rank 0) removes the partial directory
            if self._finisher is not None:
                self._finisher.join(timeout)
            raise self._error or _discard(formats.tmp_dir(self.final), self.final, err) from None
        if self._finisher is not None:
            self._finisher.join(timeout)
        if self._error is not None:
            raise CheckpointError(f"asynchronous save of {self.final} failed: {self._error}")
        if collective:
            _barrier()  # every rank knows the checkpoint is final
        log.info("saved checkpoint %s (asynchronously)", self.final)
        return self.final


_ASYNC_GROUP = None


def async_save_checkpoint(
    checkpoint_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    manifest: dict,
    rank_state: dict,
    keep: int = 0,
) -> PendingCheckpoint:
    """``save_checkpoint`` off the critical path: returns after copying the state to CPU memory.

    Same arguments. Collective; call ``wait()`` on the result (on every rank) before the next
    save, before loading a checkpoint, and before exiting.
    """
    global _ASYNC_GROUP
    import torch.distributed.checkpoint as dcp

    if object_store.is_url(checkpoint_dir):  # see _save_remote: saved before this returns
        log.info("asynchronous checkpoints to object storage are saved synchronously")
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(None)
        final = save_checkpoint(
            checkpoint_dir, step, model, optimizer, manifest=manifest, rank_state=rank_state,
            keep=keep,
        )  # fmt: skip
        return PendingCheckpoint(final, done, None)
    final, tmp = _begin(Path(checkpoint_dir), step)
    state = _state(model, optimizer)
    rank_states = _gather(rank_state)  # a collective: on this thread, not the writer's
    group = None
    if _distributed():  # the writer's collectives must not interleave with training's
        _ASYNC_GROUP = _ASYNC_GROUP or dist.new_group(backend="gloo")
        group = _ASYNC_GROUP
    if not _distributed():  # the writer thread warns outside _single_process_quiet's reach
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
    with _single_process_quiet():
        future = dcp.async_save(
            state, checkpoint_id=tmp, process_group=group, no_dist=not _distributed()
        )
    pending = PendingCheckpoint(final, future, None)
    full = {**manifest, "step": step, "rank_states": rank_states}
    pending._finisher = threading.Thread(
        target=pending._finish_after_write, args=(tmp, full, keep, _world()), daemon=True
    )
    pending._finisher.start()
    return pending


def _save_remote(
    checkpoint_dir: str,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    manifest: dict,
    rank_state: dict,
    keep: int,
) -> str:
    """``save_checkpoint`` into object storage: DCP writes the final prefix, every rank hashes
    what it wrote (read back), rank 0 writes the manifest last, which commits the checkpoint
    (``object_store``'s scheme: there is no atomic rename of a prefix to stand in for)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.fsspec_filesystem import FsspecWriter

    final = object_store.join(checkpoint_dir, formats.step_dir_name(step))
    if _rank() == 0:
        object_store.begin(final)  # its old manifest first: never a commit over mixed files
    _barrier()
    state = _state(model, optimizer)
    try:
        with _single_process_quiet():
            # sync_files off: an object has no fsync; its upload completes when the stream closes
            writer = FsspecWriter(final, sync_files=False)
            dcp.save(state, storage_writer=writer, no_dist=not _distributed())
        files = object_store.hash_files(final, _rank(), _world())
    except _write_errors() as err:
        raise _discard(final, final, err) from None
    gathered = _gather({"state": rank_state, "files": files})
    if _rank() == 0:
        hashed = {name: entry for g in gathered for name, entry in g["files"].items()}
        fields = {**manifest, "step": step, "rank_states": [g["state"] for g in gathered]}
        try:
            object_store.write_manifest(final, {**fields, "provenance": provenance()}, hashed)
        except _write_errors() as err:
            raise _discard(final, final, err) from None
        if keep > 0:
            _prune(final, keep)
    _barrier()
    log.info("saved checkpoint %s", final)
    return final


def _begin(checkpoint_dir: Path, step: int) -> tuple[Path, Path]:
    """(final, tmp) directories; rank 0 clears what a crash left and makes tmp (collective)."""
    final = checkpoint_dir / formats.step_dir_name(step)
    tmp = formats.tmp_dir(final)
    remove_stale_tmp(checkpoint_dir)
    if _rank() == 0:
        if tmp.is_symlink():  # a dangling link is no stale directory, yet blocks mkdir
            tmp.unlink()
        tmp.mkdir(parents=True)
    _barrier()
    return final, tmp


def _remove(stale: Path) -> None:
    """Delete a stale ``.tmp`` directory; a symbolic link planted there is unlinked, never
    followed (``rmtree`` through it would delete files outside the run)."""
    if stale.is_symlink():
        stale.unlink()
    else:
        shutil.rmtree(stale)


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def _gather(rank_state: dict) -> list[dict]:
    if not _distributed():
        return [rank_state]
    rank_states = [None] * dist.get_world_size()
    dist.all_gather_object(rank_states, rank_state)
    return rank_states


def _own_hashes(tmp: Path) -> dict[str, str]:
    """This rank's share of the hashing: the files it wrote (rank 0 also ``.metadata``)."""
    return formats.rank_files(tmp, _rank(), _world())


def _finish(tmp: Path, final: Path, manifest: dict, files: dict[str, str], keep: int) -> None:
    """Rank 0: write the ranks' hashes ``files`` into the manifest, then make the checkpoint
    final (atomically)."""
    fields = {**manifest, "provenance": provenance()}
    try:
        formats.write_manifest(tmp, fields, files)
    except OSError as err:  # disk full on the manifest: the same cleanup as on the tensors
        raise _discard(tmp, final, err) from None
    formats.finalize(tmp, final)
    if keep > 0:
        _prune(final, keep)


def _write_errors() -> tuple[type[BaseException], ...]:
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    return (Exception, CheckpointException)


def _discard(tmp: Path | str, final: Path | str, err: BaseException) -> CheckpointError:
    """After a failed write: remove the partial ``tmp`` (rank 0) so it does not keep the disk
    full, and an error naming the path and the cause (DCP's own message names neither). In
    object storage ``tmp`` is the final prefix (it has no manifest, so it is no checkpoint);
    if the store is unreachable it stays, and ``remove_stale_tmp`` deletes it later."""
    causes = [exc for exc, _ in err.failures.values()] if hasattr(err, "failures") else [err]
    detail = "; ".join(str(cause) for cause in causes)  # "[Errno 28] No space left on device"
    removed = "was removed"
    if _rank() == 0 and object_store.is_url(tmp):
        try:
            object_store.remove(tmp)
        except Exception as cleanup:  # the store is still unreachable
            removed = f"could not be removed ({cleanup}); it has no manifest, so is never resumed"
    elif _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    return CheckpointError(
        f"saving checkpoint {final} failed writing {tmp}: {detail}; the partial "
        f"{posixpath.basename(str(tmp))} {removed} and earlier checkpoints are untouched"
    )


def remove_stale_tmp(checkpoint_dir: str | Path) -> None:
    """Remove the ``step_NNNNNN.tmp`` directories a crash or failed save left (rank 0 only): a
    run that stopped on a full disk frees that space before it writes anything else."""
    if _rank() != 0:
        return
    if object_store.is_url(checkpoint_dir):  # there, a prefix without a manifest
        for stale in object_store.remove_incomplete(checkpoint_dir):
            log.warning("removed %s, an incomplete checkpoint left by an earlier run", stale)
        return
    for stale in formats.stale_tmp_dirs(checkpoint_dir):
        _remove(stale)
        log.warning("removed %s, an incomplete checkpoint left by an earlier run", stale)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load model and optimizer state in place from checkpoint ``path``; returns its manifest.

    Every pickle in it is read with ``safe_dcp``'s allow-list: a crafted checkpoint raises
    ``safe_dcp.UnsafeCheckpointError`` (naming the file and the global) instead of running code.
    """
    path = location(path)
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from llm_train import safe_dcp

    manifest = _store(path).read_manifest(path)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    with _single_process_quiet():
        safe_dcp.load(state, path, no_dist=not _distributed())
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    log.info("loaded checkpoint %s (step %d)", path, manifest["step"])
    return manifest


def load_model_weights(path: str | Path, model: nn.Module) -> dict:
    """Load only the model's tensors from checkpoint ``path`` into ``model``; returns its manifest.

    For eval and export: DCP reads the ``model`` keys alone (the optimizer state stays on
    disk), so no optimizer is built and its memory is never allocated. Works on plain and
    FSDP2-sharded modules, and on checkpoints without optimizer state (``hf_to_dcp``'s).
    Read with ``safe_dcp``'s allow-list, as ``load_checkpoint``.
    """
    path = location(path)
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    from llm_train import safe_dcp

    manifest = _store(path).read_manifest(path)
    state = {"model": get_model_state_dict(model)}
    with _single_process_quiet():
        safe_dcp.load(state, path, no_dist=not _distributed())
    set_model_state_dict(model, state["model"])
    log.info("loaded model weights of %s (step %d)", path, manifest["step"])
    return manifest


_REQUIRED = (".metadata",)


def verify_checkpoint(path: str | Path) -> str | None:
    """Why checkpoint ``path`` is not usable, or None if its manifest and all hashes check out.

    Under distributed it is collective: each rank hashes its share of the files
    (``llm_formats.checkpoint.owner``) and every rank returns the same answer, the first
    failing rank's reason (naming the file) or None.
    """
    path = location(path)
    reason = _store(path).verify(path, _REQUIRED, rank=_rank(), world=_world())
    if not _distributed():
        return reason
    reasons: list[str | None] = [None] * _world()
    dist.all_gather_object(reasons, reason)
    failed = [(rank, r) for rank, r in enumerate(reasons) if r is not None]
    return f"{failed[0][1]} (found by rank {failed[0][0]})" if failed else None


def latest_checkpoint(checkpoint_dir: str | Path, fields: tuple[str, ...] = ()) -> Path | None:
    """The newest valid checkpoint under ``checkpoint_dir`` (None if there is none).

    Invalid ones (no manifest, missing or corrupt files, a manifest without one of ``fields``,
    which the caller reads from it) are skipped with a warning; ``.tmp`` directories are never
    considered. Collective under distributed: the ranks verify each candidate together
    (``verify_checkpoint``), rank 0's listing of candidates is everyone's.
    """
    checkpoint_dir = location(checkpoint_dir)
    candidates = [_store(checkpoint_dir).step_dirs(checkpoint_dir)]
    if _distributed():
        dist.broadcast_object_list(candidates, src=0)
    for path in candidates[0]:
        reason = verify_checkpoint(path) or _missing_field(path, fields)
        if reason is None:
            return path
        if _rank() == 0:
            log.warning("skipping invalid checkpoint %s: %s", path, reason)
    return None


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Every ``step_NNNNNN`` directory under ``checkpoint_dir``, valid or not, newest first."""
    checkpoint_dir = location(checkpoint_dir)
    return _store(checkpoint_dir).step_dirs(checkpoint_dir)


def read_checkpoint_manifest(path: str | Path) -> dict:
    """The validated manifest of checkpoint ``path`` (a directory or an ``s3://`` prefix).

    Raises:
        llm_formats.checkpoint.ManifestError: naming the manifest and what is wrong with it.
    """
    path = location(path)
    return _store(path).read_manifest(path)


def remove_checkpoints(checkpoint_dir: str | Path) -> list[Path | str]:
    """Delete every checkpoint under ``checkpoint_dir`` (valid or not, and what failed saves
    left); returns the ``step_NNNNNN`` ones deleted. Each loses its manifest first."""
    checkpoint_dir = location(checkpoint_dir)
    found = list_checkpoints(checkpoint_dir)
    if object_store.is_url(checkpoint_dir):
        for path in found:
            object_store.remove(path)
    else:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return found


def _missing_field(path: Path, fields: tuple[str, ...]) -> str | None:
    manifest = _store(path).read_manifest(path)
    missing = [name for name in fields if name not in manifest]
    if not missing:
        return None
    return f"{path / formats.MANIFEST} has no {', '.join(missing)} to resume from"


def _intact(path: Path) -> str | None:
    """Why ``path`` is not a whole checkpoint, from its manifest and its files' presence and
    sizes alone (``stat``, no hashing): what pruning checks, on rank 0 only."""
    return _store(path).verify(path, _REQUIRED, hashes=False)


def _prune(new: Path, keep: int) -> None:
    """Keep the ``keep`` newest intact checkpoints, counting from the one just written.

    Intact (``_intact``) means manifest, files and sizes, not hashes: every checkpoint here was
    hashed when it was written (``new`` a moment ago) and checked by the resume that read it,
    and re-hashing them all on rank 0 at every save cost a full read of each. Only intact ones
    count as kept and only intact ones older than the last kept are deleted: a broken (or
    newer, e.g. from a fallback resume) directory is left alone with a warning, since deleting
    good checkpoints to keep it would leave nothing to resume from. Nothing is deleted unless
    ``new`` itself is intact, so a resumable checkpoint always remains.
    """
    if (reason := _intact(new)) is not None:
        log.warning("not pruning: the checkpoint just written %s is not intact: %s", new, reason)
        return
    remote = object_store.is_url(new)
    parent = posixpath.dirname(new.rstrip("/")) if remote else new.parent
    kept, step = 1, formats.step_of(posixpath.basename(str(new)))
    for path in _store(new).step_dirs(parent):
        if path == new:
            continue
        if (reason := _intact(path)) is not None:
            log.warning("left invalid checkpoint %s (not counted as kept): %s", path, reason)
        elif formats.step_of(posixpath.basename(str(path))) > step:
            log.warning("left checkpoint %s, newer than the one just written", path)
        elif kept < keep:
            kept += 1
        else:
            object_store.remove(path) if remote else shutil.rmtree(path)
            log.info("removed old checkpoint %s", path)
