"""Warm start: a fresh run's first weights (and optionally optimizer state) from elsewhere.

``TrainConfig.init_from`` names the source; the app resolves it into a ``WarmStart``: a DCP
checkpoint directory (another run's ``step_NNNNNN/``, read with ``safe_dcp``'s allow-list) or any
directory a DCP ``StorageReader`` reads (e.g. torch's ``HuggingFaceStorageReader`` for
safetensors) with a map from our state-dict names to the source's. Either way DCP plans the read
for this rank's shards only: under FSDP2 each rank reads the byte ranges of its own slices, and
no rank ever holds the full state dict. The ``Trainer`` calls ``WarmStart.load`` on a fresh start
only; a run with checkpoints of its own resumes from them.

``check`` compares the source's tensors (from its metadata, no weights read) with the model's
and raises one ``WarmStartError`` naming every missing, unexpected and misshapen tensor, together
with any problems the caller found (the app adds every differing model-config field).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["WarmStart", "WarmStartError", "config_problems", "tensor_problems"]

log = logging.getLogger(__name__)
_MODEL = "model."  # llm_train.checkpoint saves {"model": ..., "optim": ...}
_OPTIM = "optim."
# Param-group settings the new run's config decides, not the source's (set_state_dict would
# otherwise load the old run's weight decay, betas and LR along with the moments).
_GROUP_SETTINGS = ("lr", "initial_lr", "weight_decay", "betas", "eps")


class WarmStartError(ValueError):
    """The source cannot start this model; the message names every mismatch at once."""


@dataclass(frozen=True)
class WarmStart:
    """Where a fresh run's weights come from.

    Attributes:
        path: A DCP checkpoint directory, or the directory ``storage_reader`` reads.
        record: JSON-able provenance (path, kind, step, manifest hash) for manifests and logs.
        names: Our state-dict name -> the source's key; None: a DCP checkpoint of
            ``llm_train.checkpoint`` (keys ``model.<name>``).
        storage_reader: Builds the DCP ``StorageReader`` for ``path``; None: ``safe_dcp``'s.
        optimizer: Also restore the optimizer state (DCP checkpoints with ``optim`` only).
        problems: Mismatches the caller found (e.g. model-config fields), reported by
            ``check`` in the same error as the tensors'.
    """

    path: Path
    record: dict = field(default_factory=dict)
    names: Mapping[str, str] | None = None
    storage_reader: Callable[[Path], object] | None = None
    optimizer: bool = False
    problems: tuple[str, ...] = ()

    def source_shapes(self) -> dict[str, tuple[int, ...]]:
        """Source key -> global shape, from the metadata alone (no tensor is read)."""
        meta = self._reader().read_metadata()
        return {
            key: tuple(item.size)
            for key, item in meta.state_dict_metadata.items()
            if hasattr(item, "size")  # tensors; bytes entries (e.g. param groups) have none
        }

    def check(self, model: nn.Module) -> None:
        """Raise one WarmStartError naming ``problems`` and every tensor that does not fit."""
        shapes = self.source_shapes()
        found = self._ours(shapes)
        expected = {k: tuple(v.shape) for k, v in _model_state(model).items()}
        all_problems = [*self.problems, *tensor_problems(expected, found)]
        if self.optimizer:
            if self.names is not None:
                all_problems.append("init_optimizer: only a DCP checkpoint holds optimizer state")
            elif not any(key.startswith(_OPTIM) for key in shapes):
                all_problems.append("init_optimizer: the checkpoint holds no optimizer state")
        if all_problems:
            raise WarmStartError(
                f"train.init_from={self.path} cannot start this model "
                f"({len(all_problems)} problems): " + "; ".join(all_problems)
            )

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Read the weights (and, with ``optimizer``, its state) into ``model`` in place."""
        if self.optimizer:
            self._load_with_optimizer(model, optimizer)
        elif self.names is None:
            from llm_train.checkpoint import load_model_weights

            load_model_weights(self.path, model)
        else:
            self._load_renamed(model)
        log.info("warm start: weights%s from %s", " and optimizer" * self.optimizer, self.path)

    def _reader(self):
        if self.storage_reader is not None:
            return self.storage_reader(self.path)
        from llm_train.safe_dcp import SafeFileSystemReader

        return SafeFileSystemReader(self.path)

    def _ours(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The source's tensors under our names; a key with no name of ours keeps its own."""
        if self.names is None:
            return {k.removeprefix(_MODEL): s for k, s in shapes.items() if k.startswith(_MODEL)}
        theirs = {v: k for k, v in self.names.items()}
        return {theirs.get(k, k): s for k, s in shapes.items()}

    def _load_renamed(self, model: nn.Module) -> None:
        """DCP load through ``storage_reader`` into our (possibly sharded) tensors, keyed by the
        source's names: each rank reads its own shards' slices, whatever the file layout."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        from llm_train.checkpoint import _single_process_quiet

        state = _model_state(model)
        renamed = {self.names[k]: v for k, v in state.items()}
        with _single_process_quiet():
            dcp.load(renamed, storage_reader=self._reader(), no_dist=not _distributed())
        set_model_state_dict(model, {k: renamed[self.names[k]] for k in state})

    def _load_with_optimizer(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Weights and optimizer moments from the checkpoint; the param-group settings (LR,
        weight decay, betas) stay the new config's."""
        from llm_train.checkpoint import load_checkpoint

        settings = [{k: g[k] for k in _GROUP_SETTINGS if k in g} for g in optimizer.param_groups]
        load_checkpoint(self.path, model, optimizer)
        for group, kept in zip(optimizer.param_groups, settings, strict=True):
            group.update(kept)


def tensor_problems(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """Every tensor the model needs that ``found`` lacks, has no place for, or shapes otherwise."""
    problems = [f"missing tensor {k}" for k in sorted(set(expected) - set(found))]
    problems += [f"unexpected tensor {k}" for k in sorted(set(found) - set(expected))]
    problems += [
        f"{k} has shape {list(found[k])} in the source, the model needs {list(shape)}"
        for k, shape in sorted(expected.items())
        if k in found and tuple(found[k]) != tuple(shape)
    ]
    return problems


def config_problems(ours: Mapping, theirs: Mapping, prefix: str = "model.") -> list[str]:
    """``model.field: source X, this run Y`` for every field whose values differ."""
    return [
        f"{prefix}{key}: the source has {theirs.get(key)!r}, this run {ours.get(key)!r}"
        for key in sorted(set(ours) | set(theirs))
        if ours.get(key) != theirs.get(key)
    ]


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as DCP saves it (DTensor shards under FSDP2: global shapes)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()
