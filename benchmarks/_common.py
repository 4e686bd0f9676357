"""Helpers shared by the benchmark scripts: device names and slugs, provenance, atomic writes.

The scripts import it as ``benchmarks._common``: each runs from the repository root as
``python -m benchmarks.<kind>.bench_<kind>``.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from pathlib import Path

import torch

from benchmarks._machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def device_name(device: torch.device) -> str:
    """Marketing name of the GPU, or the CPU model with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpu_name()
    return f"{cpu} ({torch.get_num_threads()} threads)"


def slug(name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def device_slug(device: torch.device) -> str:
    """File-name part for ``device``: the GPU name, or the CPU model without its thread count."""
    name = device_name(device)
    return slug(name.split(" (")[0]) if device.type == "cpu" else slug(name)


def git_revision() -> str:
    """Short HEAD, marked when packages/ has uncommitted changes.

    ``$BENCH_GIT_REV`` wins when the caller set it: the GPU machine gets a copy of the working
    tree whose ``.git`` (if any came along) can be older than the tree. Without either:
    ``"unknown"``.
    """
    given = os.environ.get("BENCH_GIT_REV", "").strip()
    if given:
        return f"{given} (from BENCH_GIT_REV)"
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "packages"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + (" (packages/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(device: str, versions: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Provenance lines: date (UTC), device, torch version, ``versions``, git revision."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [("date", now), ("device", device), ("torch", torch.__version__), *versions,
            ("git", git_revision())]  # fmt: skip


def parse_preset(spec: str) -> tuple[str, dict]:
    """``"debug:vocab_size=4096,n_layers=2"`` -> ``("debug", {"vocab_size": 4096, "n_layers": 2})``.

    Values are parsed as ``true``/``false`` (bools), then int, then float, else kept as strings
    (``kernels=false`` must not reach the config as the truthy string ``"false"``).
    """
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"preset override {item!r} in {spec!r} is not field=value")
        if value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
            continue
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        overrides[key] = value
    return name, overrides


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def profile_table(step, reps: int, rows: int, *, self_time: bool = False) -> str:
    """torch.profiler's table for ``reps`` calls of ``step``, sorted by (self) CUDA time on a
    GPU, CPU time elsewhere."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(reps):
            step()
        if cuda:
            torch.cuda.synchronize()
    key = ("self_" if self_time else "") + ("cuda_time_total" if cuda else "cpu_time_total")
    return f"sorted by {key}\n" + prof.key_averages().table(
        sort_by=key, row_limit=rows, max_name_column_width=70
    )
