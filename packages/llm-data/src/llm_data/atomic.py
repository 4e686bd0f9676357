"""Temp folders for outputs written atomically, and cleanup of those left by killed runs.

An output is built in `.<name>.tmp-<host>-<pid>-<random>` beside it and renamed into place. A
run killed with SIGKILL cannot remove its temp folder, so the next run removes those whose
process is gone: only folders of this host (a pid means nothing on another machine) whose pid
is not alive, so a concurrent live run keeps its folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

__all__ = ["make_temp_dir", "remove_stale_temp_dirs"]

log = logging.getLogger(__name__)


def make_temp_dir(out: Path) -> Path:
    """Create and return a fresh temp folder beside `out`, named after this host and pid."""
    tmp = (
        out.parent / f".{out.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    tmp.mkdir()
    return tmp


def remove_stale_temp_dirs(out: Path) -> list[Path]:
    """Remove temp folders of `out` left by dead processes of this host; return them."""
    if not out.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(out.name)}\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}")
    host, removed = socket.gethostname(), []
    for path in sorted(out.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if match and match["host"] == host and not _alive(int(match["pid"])) and path.is_dir():
            log.warning("removing %s, left by process %s that no longer runs", path, match["pid"])
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
