"""The run directory: one `pretrain` at a time (a lock), and runs that must already exist.

The lock is `flock` on `<run>/pretrain.lock`, which records who holds it (pid, host, start time,
command). The OS releases a flock when its process dies, however it dies, so a crashed run never
leaves a lock behind that blocks the next one; the file itself stays and is overwritten by the
next holder. flock works on local file systems; on NFS it depends on the mount. The lock file
opens with ``O_NOFOLLOW``: a symbolic link at its path is an error, never written through.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from llm_formats import rundir as layout


class RunError(Exception):
    """The run directory cannot be used as asked; the message says why and what to do."""


class RunLock:
    """Exclusive lock on a run directory for the life of a `with` block; fails at once if held."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / layout.LOCK
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        while self._fd is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunError(self._held_message()) from None
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # the file was removed or replaced while we waited: lock the current one
                os.close(fd)
        _write_holder(self._fd)
        return self

    def _open(self) -> int:
        """The lock file, never through a symbolic link: one planted at the lock path would
        make the holder's details overwrite the file it points at, outside the run."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            if self.path.is_symlink():
                raise RunError(
                    f"{self.path} is a symbolic link; refusing to lock through it: remove it"
                ) from None
            raise

    def __exit__(
        self, kind: type | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def _held_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            who = (
                f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}: "
                f"{holder.get('command', '?')}"
            )
        except (OSError, ValueError, KeyError):
            who = "another process (it has not written its details yet)"
        return (
            f"run directory {self.path.parent} is in use by {who}. Two runs in one directory "
            "would overwrite each other's checkpoints and metrics: wait for it to finish, stop "
            "it, or give this run another run.name"
        )


def read_run_json(path: Path) -> dict:
    """A JSON object the app wrote in a run directory (``stages.json``, the training record),
    ``{}`` when it is not there; a damaged one is an error naming the file and line."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno}); restore it, or "
            "delete it to run the stages again"
        ) from None
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def checkpoint_dir(run_dir: Path, configured: str = "") -> Path | str:
    """Where a run's checkpoints are: ``train.checkpoint_dir`` when set (``configured``: a
    folder, or a URL such as ``s3://bucket/run/checkpoints``, kept a string), else
    ``<run_dir>/checkpoints``. Every other file of the run stays in ``run_dir``."""
    if not configured:
        return run_dir / layout.CHECKPOINTS
    return configured if "://" in configured else Path(configured).expanduser().resolve()


def checkpoint_name(checkpoint: Path | str) -> str:
    """``step_NNNNNN`` of a checkpoint directory or URL."""
    return os.path.basename(str(checkpoint).rstrip("/"))


def require_existing_run(run_dir: Path) -> None:
    """Stages that only read a run (eval, report) must not create an empty one from a typo."""
    if (run_dir / layout.STAGES).is_file():
        return
    others = sorted(p.parent.name for p in run_dir.parent.glob(f"*/{layout.STAGES}"))
    known = ", ".join(others) or "none"
    raise RunError(
        f"run {run_dir} does not exist (no stages.json): check run.name and run.root "
        f"(existing runs under {run_dir.parent}: {known}), or run the earlier stages first"
    )


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.lstat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd: int) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
