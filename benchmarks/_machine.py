"""The CPU's model name, without torch: shared by `_common.py` and the torch-free data scripts."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """`model name` from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_slug() -> str:
    """`cpu_name()` as a file-name part: lower case, runs of other characters as one `-`."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-")
