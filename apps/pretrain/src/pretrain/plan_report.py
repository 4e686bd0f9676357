"""`pretrain plan`'s tables: the simulated step beside ``tools/memory.py``'s estimate.

The estimate lives in the repository's ``tools/`` package, which is not installed: it is found
from the working directory (the repository root, as the README's commands run). Elsewhere the
plan still runs and its estimate column says n/a.
"""

from __future__ import annotations

import datetime
import importlib
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from pretrain.config import PretrainConfig
from pretrain.plan import StepPlan

__all__ = ["memory_estimate", "render"]

GiB = 2**30
MiB = 2**20


def _unit(plan: StepPlan) -> tuple[str, int]:
    """GiB for a model that needs them, MiB for a small one (the tests' and the sample's)."""
    return ("GiB", GiB) if plan.peak >= GiB else ("MiB", MiB)


def memory_estimate(config: PretrainConfig, shard: int) -> Any | None:
    """``tools.memory.estimate`` for this run on ``shard`` FSDP ranks, or None without it."""
    memory = _tools_memory()
    if memory is None:
        return None
    train = config.train
    plan = memory.MemoryPlan(
        config=config.model,
        seq_len=config.shards.seq_len,
        micro_batch=config.loader.batch_size,
        precision=train.precision,
        optimizer=train.optimizer,
        activation_checkpointing=train.activation_checkpointing,
        fsdp=shard,
    )
    return memory.estimate(plan)


def _tools_memory():
    if str(Path.cwd()) not in sys.path and (Path.cwd() / "tools" / "memory.py").is_file():
        sys.path.append(str(Path.cwd()))
    try:
        return importlib.import_module("tools.memory")
    except ImportError:
        return None


def render(config: PretrainConfig, plan: StepPlan, estimate: Any | None, command: str) -> str:
    """The plan as markdown: settings, per-rank peak memory by category, collectives, checkpoint."""
    lines = [
        f"# Dry run: {config.model_preset} on {plan.world_size} ranks "
        f"({_mesh_text(plan.mesh_shape)})",
        "",
        f"Made {datetime.date.today().isoformat()} on {_machine()} (torch {torch.__version__}) "
        f"in {plan.seconds:.0f} s with:",
        "",
        f"    {command}",
        "",
        *_settings(config, plan),
        "",
        f"## Per-rank peak memory (rank 0, {_unit(plan)[0]})",
        "",
        *_memory_rows(plan, estimate),
        "",
        f"## Collectives per step (rank 0, {_unit(plan)[0]})",
        "",
        *_collective_rows(plan),
        "",
        "## Checkpoint (DCP save plan, nothing written)",
        "",
        *_checkpoint_lines(plan),
    ]
    return "\n".join(lines) + "\n"


def _checkpoint_lines(plan: StepPlan) -> list[str]:
    name, unit = _unit(plan)
    distinct = plan.checkpoint_bytes * plan.world_size // plan.mesh_shape[0]
    return [
        f"Rank 0 would write {plan.checkpoint_items} items, {plan.checkpoint_bytes / unit:,.2f} "
        f"{name} (model + optimizer state). Replicas hold the same shards and DCP's global plan "
        f"writes each once: {distinct / unit:,.1f} {name} for the job, from "
        f"{plan.world_size // plan.mesh_shape[0]} ranks' worth of shards."
    ]


def _mesh_text(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"FSDP over {shape[0]}"
    return f"HSDP: {shape[0]} replicas x {shape[1]} shards"


def _machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _settings(config: PretrainConfig, plan: StepPlan) -> list[str]:
    t = config.train
    rows = [
        ("parameters", f"{plan.params:,}"),
        ("parameters on rank 0 (padded shards)", f"{plan.local_params:,}"),
        ("seq_len (shards.seq_len)", config.shards.seq_len),
        ("micro batch (loader.batch_size)", config.loader.batch_size),
        ("grad_accum_steps", t.grad_accum_steps),
        ("activation checkpointing", t.activation_checkpointing),
        ("precision", f"{t.precision} (FSDP2 param dtype and autocast, as on CUDA)"),
        ("optimizer", t.optimizer),
    ]
    return ["| setting | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]


# plan category -> tools/memory.py component(s) it corresponds to
_ESTIMATE = {
    "parameters": ("params",),
    "gathered parameters": ("weight_copies",),
    "gradients": ("gradients",),
    "optimizer state": ("optimizer",),
    "activations": ("activations",),
    "temporaries": ("loss_buffer",),
}


def _memory_rows(plan: StepPlan, estimate: Any | None) -> list[str]:
    _, unit = _unit(plan)
    rows = [
        "| category (at the step's peak) | plan | tools/memory.py (its term) |",
        "| --- | ---: | ---: |",
    ]
    for category, value in plan.memory.items():
        est = "n/a"
        if estimate is not None:
            terms = _ESTIMATE[category]
            est = f"{sum(getattr(estimate, k) for k in terms) / unit:,.2f} ({', '.join(terms)})"
        rows.append(f"| {category} | {value / unit:,.2f} | {est} |")
    if estimate is None:
        rows.append(f"| **peak** | **{plan.peak / unit:,.2f}** | n/a |")
        return rows
    diff = 100 * (estimate.peak - plan.peak) / plan.peak
    rows.append(
        f"| **peak** | **{plan.peak / unit:,.2f}** | **{estimate.peak / unit:,.2f}** "
        f"({diff:+.1f}%) |"
    )
    return rows


def _collective_rows(plan: StepPlan) -> list[str]:
    _, unit = _unit(plan)
    rows = [
        "| collective | group size | count | tensor bytes | ring bytes sent |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for c in plan.collectives:
        rows.append(
            f"| {c.op} | {c.group_size} | {c.count} | {c.bytes / unit:,.3f} "
            f"| {c.wire_bytes / unit:,.3f} |"
        )
    return rows
