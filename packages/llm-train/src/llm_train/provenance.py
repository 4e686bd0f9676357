"""What produced a run: versions, device and git revision, recorded in every checkpoint."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["provenance"]

_PACKAGES = ("llm-train", "llm-model", "llm-data", "llm-kernels", "llm-eval", "torch", "triton")


def provenance(cwd: str | Path = ".") -> dict:
    """Package versions, python, device and git revision (None outside a git checkout)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "device": device or platform.machine(),
        "git_revision": _git_revision(cwd),
    }


def _git_revision(cwd: str | Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
