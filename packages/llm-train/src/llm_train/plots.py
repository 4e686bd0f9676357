"""Loss curves rendered from a run's metrics JSONL (needs the ``plots`` extra)."""

from __future__ import annotations

import io
from pathlib import Path

from llm_formats.atomic import atomic_write_bytes
from llm_formats.metrics import read_metrics

__all__ = ["plot_loss"]

# Per-step training quantities. Keys with a "/" (e.g. "eval/bpb") are eval metrics, one panel
# each; any other key is a part of the loss (ce, z_loss, aux_loss), drawn on the loss panel.
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
    parts, eval_keys = panels(records)
    fig, axes = plt.subplots(1 + len(eval_keys), 1, figsize=(7, 3 + 2.5 * len(eval_keys)))
    axes = axes if len(eval_keys) else [axes]
    for key in ["loss", *parts]:
        _draw(axes[0], records, key)
    axes[0].set_ylabel("loss")
    if parts:
        axes[0].legend()
    for ax, key in zip(axes[1:], eval_keys, strict=True):
        _draw(ax, records, key)
        ax.set_ylabel(key)
    axes[-1].set_xlabel("step")
    axes[0].set_title(Path(metrics_jsonl).parent.name or "training")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(out_png, png.getvalue())


def panels(records: list[dict]) -> tuple[list[str], list[str]]:
    """(loss parts drawn with the loss, eval metrics that get a panel each)."""
    keys = {k for r in records for k in r} - _TRAIN_KEYS
    eval_keys = sorted(k for k in keys if "/" in k)
    parts = sorted(k for k in keys - set(eval_keys) if not _same_as_loss(records, k))
    return parts, eval_keys


def _draw(ax, records: list[dict], key: str) -> None:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None, label=key)
    ax.grid(alpha=0.3)


def _same_as_loss(records: list[dict], key: str) -> bool:
    """A part equal to the loss at every step (ce without z-loss) adds nothing to the plot."""
    pairs = [(r.get(key), r.get("loss")) for r in records if r.get(key) is not None]
    return all(part == loss for part, loss in pairs)
