"""Results of several evaluations (e.g. checkpoints of one run) as a table and a plot."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

from llm_formats.atomic import atomic_write_bytes
from llm_formats.eval_results import read_summary


def _row(directory: str | os.PathLike) -> dict[str, Any]:
    summary = read_summary(directory)
    meta = summary.get("metadata", {})
    return {"dir": str(directory), "step": meta.get("step"), "model": meta.get("model", "?"),
            "tasks": summary["tasks"]}  # fmt: skip


def results_table(
    directories: Sequence[str | os.PathLike], metric: str
) -> tuple[str, list[dict[str, Any]]]:
    """Markdown table: one row per results directory (ordered by step when known), one column
    per task with ``metric ± stderr``; and the rows."""
    rows = sorted((_row(d) for d in directories), key=lambda r: (r["step"] is None, r["step"]))
    tasks = sorted({t for r in rows for t in r["tasks"]})
    lines = [
        f"| model | step | {' | '.join(tasks)} |",
        "| --- | ---: |" + " ---: |" * len(tasks),
    ]
    for r in rows:
        cells = []
        for task in tasks:
            m = r["tasks"].get(task, {})
            name = metric if metric in m else "acc"
            value, err = m.get(name), m.get(f"{name}_stderr")
            cells.append("" if value is None else f"{value:.3f} ± {err:.3f}")
        step = "" if r["step"] is None else str(r["step"])
        lines.append(f"| {r['model']} | {step} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n", rows


def plot_over_steps(rows: Sequence[dict[str, Any]], metric: str, path: str | os.PathLike) -> None:
    """One line per task: ``metric`` (``acc`` where a task has no such metric) against step,
    with a one-standard-error band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["step"] is not None]
    if not rows:
        raise ValueError("no results carry a step (metadata 'step') to plot against")
    fig, ax = plt.subplots(figsize=(6, 4))
    for task in sorted({t for r in rows for t in r["tasks"]}):
        pts = [(r["step"], r["tasks"][task]) for r in rows if task in r["tasks"]]
        name = metric if metric in pts[0][1] else "acc"
        steps = [s for s, _ in pts]
        values = [m[name] for _, m in pts]
        errs = [m.get(f"{name}_stderr", 0.0) for _, m in pts]
        ax.plot(steps, values, marker="o", label=f"{task} ({name})")
        low = [v - e for v, e in zip(values, errs, strict=True)]
        high = [v + e for v, e in zip(values, errs, strict=True)]
        ax.fill_between(steps, low, high, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()  # written with atomic_write_bytes: a fixed `.tmp` name could be a planted
    fig.savefig(png, format="png", dpi=120)  # symbolic link that savefig would write through
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())
