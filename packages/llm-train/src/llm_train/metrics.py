"""Metrics: one JSONL file per run (the source of truth), mirrored to TensorBoard and Weights &
Biases if asked. The mirrors are append-only: lines that a resume drops from the JSONL (steps
trained again) stay in them, and the new values of those steps follow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llm_formats.atomic import atomic_write_text, open_append
from llm_formats.metrics import make_record, read_metrics, record_line

__all__ = ["MetricsWriter", "read_metrics"]  # read_metrics: llm_formats.metrics', kept public


class MetricsWriter:
    """Appends ``{"step": s, name: value, ...}`` lines to a JSONL file, flushed line by line.

    Non-finite values are written as ``null`` so every line stays valid JSON.

    Args:
        path: The JSONL file (created with its parent directories; appended to if it exists).
        tensorboard_dir: If given, also write scalars there (needs the ``tensorboard`` extra).
        wandb: If given, keyword arguments of ``wandb.init`` (``dir``, ``project``, ``name``,
            ``mode``, ``config``): also log there (needs the ``wandb`` extra). The mode is
            ``offline`` unless given or set in ``WANDB_MODE``; upload later with ``wandb sync``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        tensorboard_dir: str | Path | None = None,
        wandb: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_append(self.path)
        self._tb = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional extra

            self._tb = SummaryWriter(str(tensorboard_dir))
        self._wandb = _wandb_run(wandb) if wandb is not None else None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Write one line for ``step``."""
        record = make_record(step, metrics)
        self._file.write(record_line(record))
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self._tb.add_scalar(key, value, global_step=step)
        if self._wandb is not None:
            values = {k: v for k, v in record.items() if k != "step" and v is not None}
            self._wandb.log(values, step=int(step))

    def truncate_after(self, step: int) -> int:
        """Drop lines with ``"step" > step`` (written after the checkpoint a run resumes from).

        Returns the number of records dropped, so the caller can say so.
        """
        self._file.close()
        records = read_metrics(self.path)
        kept = [r for r in records if r["step"] <= step]
        atomic_write_text(self.path, "".join(map(record_line, kept)))
        self._file = open_append(self.path)
        return len(records) - len(kept)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _wandb_run(kwargs: dict[str, Any]) -> Any:
    try:
        import wandb
    except ImportError as err:
        raise ImportError(
            f"W&B logging (TrainConfig.wandb) needs wandb: install llm-train[wandb] ({err})"
        ) from err
    kwargs = dict(kwargs)
    kwargs["mode"] = os.environ.get("WANDB_MODE") or kwargs.get("mode") or "offline"
    if kwargs.get("dir") is not None:
        Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
        kwargs["dir"] = str(kwargs["dir"])
    return wandb.init(**kwargs)
