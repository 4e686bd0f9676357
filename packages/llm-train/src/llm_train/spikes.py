"""Loss-spike records: which batches led to a spike, and ``<run_dir>/spikes.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llm_formats.atomic import open_append

__all__ = ["SpikeLog", "batch_record"]


def batch_record(loader_state: dict | None, batch: dict) -> dict:
    """Where a batch came from: the loader's ``state_dict()`` taken before it was drawn, and
    its ``"sample_ids"`` if the loader provides that optional key (ids of its sequences)."""
    record = {"loader": loader_state}
    ids = batch.get("sample_ids")
    if ids is not None:
        record["sample_ids"] = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return record


class SpikeLog:
    """The window of steps a spike may be blamed on, and the JSONL file of spike events.

    The window holds, per step since the last checkpoint (or only the latest step, when
    ``keep`` is off in ``record_step``), the ``batch_record`` of each micro-batch. Events are
    appended, never truncated: after a resume or a rollback they still describe what happened.

    Args:
        path: The JSONL file; None on ranks other than 0, which keep the window but write nothing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.window: list[dict] = []

    def record_step(self, step: int, batches: list[dict], *, keep: bool) -> None:
        """Add step ``step``'s batch records; ``keep=False`` drops the earlier steps."""
        if not keep:
            self.window.clear()
        self.window.append({"step": step, "batches": batches})

    def clear(self) -> None:
        """Forget the window (a checkpoint now covers those steps)."""
        self.window.clear()

    def write(self, event: dict) -> None:
        """Append one event line (flushed: the run may stop right after)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_append(self.path) as file:
            file.write(json.dumps(event) + "\n")
