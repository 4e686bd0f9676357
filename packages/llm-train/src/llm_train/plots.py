"""Loss curves rendered from a run's metrics JSONL (needs the ``plots`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from llm_train.metrics import read_metrics

__all__ = ["plot_loss"]

# Per-step training quantities; every other key in the JSONL is treated as an eval metric.
_TRAIN_KEYS = {
    "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "skipped",
    "skipped_nan", "skipped_spike", "skipped_total",
}  # fmt: skip


def plot_loss(metrics_jsonl: str | Path, out_png: str | Path) -> Path:
    """Plot training loss (and any eval metrics, one panel each) against step.

    Args:
        metrics_jsonl: The run's metrics file.
        out_png: Where to write the PNG (atomically).

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_jsonl)
    if not any(r.get("loss") is not None for r in records):
        raise ValueError(f"{metrics_jsonl}: no records with a 'loss' value to plot")
    eval_keys = sorted({k for r in records for k in r} - _TRAIN_KEYS)
    fig, axes = plt.subplots(1 + len(eval_keys), 1, figsize=(7, 3 + 2.5 * len(eval_keys)))
    axes = axes if len(eval_keys) else [axes]
    for ax, key in zip(axes, ["loss", *eval_keys], strict=True):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    axes[0].set_title(Path(metrics_jsonl).parent.name or "training")
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(out_png.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png
