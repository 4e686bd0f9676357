"""The training loop: resume, step, log, call back, checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from llm_formats.atomic import atomic_write_text
from llm_formats.metrics import METRICS_FILE
from llm_train.batch_warmup import micro_batches_at
from llm_train.callback import Callback
from llm_train.checkpoint import (
    CheckpointError,
    PendingCheckpoint,
    async_save_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    location,
    remove_stale_tmp,
    save_checkpoint,
    verify_checkpoint,
)
from llm_train.config import TrainConfig, trajectory_changes
from llm_train.guard import SpikeGuard
from llm_train.metrics import MetricsWriter
from llm_train.optimizer import build_optimizer
from llm_train.parallel import materialize, parallelize
from llm_train.provenance import provenance
from llm_train.rng import get_rng_state, set_rng_state
from llm_train.schedule import build_scheduler, lr_at, set_lr
from llm_train.spikes import SpikeLog, batch_record
from llm_train.step import finite, to_floats, train_step
from llm_train.stop import StopSignals, TrainingStopped
from llm_train.warm_start import WarmStart
from llm_train.watchdog import StepWatchdog, SyncedGC

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

__all__ = ["Trainer"]

log = logging.getLogger(__name__)
# What a resume reads from a manifest besides the weights (`_restore`): a checkpoint without one
# is skipped for an older one, like a corrupt file, instead of a KeyError in the middle of resuming.
_RESUME_FIELDS = ("tokens", "skipped_total", "scheduler", "guard", "rank_states")


class Trainer:
    """Trains a model that meets the trainable-model protocol on batches from ``loader``.

    Writes ``<run_dir>/metrics.jsonl``, ``<run_dir>/spikes.jsonl`` (one line per loss spike, see
    ``TrainConfig.spike_policy``) and ``<run_dir>/checkpoints/step_NNNNNN/``. With
    ``resume=True`` it continues from the newest valid checkpoint: model, optimizer, LR schedule,
    loader position, step and token counters, spike-guard window and RNG states are restored, so
    the resumed run takes the same steps on the same data as an uninterrupted one. If checkpoints
    exist but none is valid, it raises ``CheckpointError`` instead of starting again at step 0.
    Resuming under a larger ``steps`` continues the run with the LR schedule recomputed for the
    new length (logged); a checkpoint past ``steps`` is an error; other changed settings that
    alter the updates (``trajectory_changes``) are logged as warnings. SIGTERM, SIGINT or
    SIGUSR1 (Slurm's warning) make every rank finish its step, checkpoint it together and raise
    ``TrainingStopped`` (exit code 128 + the signal): a rerun resumes there (``llm_train.stop``).

    Args:
        model: ``forward(input_ids, labels)`` -> dict with ``"loss"``; ``blocks``;
            ``flops_per_token(seq_len)``. On its device; not yet parallelized.
        loader: Iterable of ``{"input_ids", "labels"}`` batches with ``state_dict()`` and
            ``load_state_dict()``; iterated again when an epoch ends. A batch may also carry
            ``"sample_ids"`` (ids of its sequences): they are written to ``spikes.jsonl``.
        config: The training config.
        run_dir: Directory for metrics and checkpoints (shared by all ranks).
        callbacks: Objects meeting the ``Callback`` protocol.
        resume: Continue from the newest valid checkpoint in ``run_dir`` if there is one.
        mesh: Data-parallel mesh; if given, the model is sharded with FSDP2.
        init_device: For a model built on the meta device: where to materialise it after
            sharding; each rank then runs ``model.init_weights(seed=config.seed)`` on its own
            shards (see ``parallel.materialize``).
        tensorboard_dir: If given, rank 0 mirrors the metrics there (``[tensorboard]`` extra).
        manifest_fields: JSON-able fields every checkpoint's manifest records besides the
            trainer's own, so a checkpoint describes itself (the app gives ``model_config``,
            ``tokenizer_card_sha256`` and ``tokenizer_sha256``; see ``llm_formats.checkpoint``).
        warm_start: Where a fresh run's weights come from (``llm_train.warm_start``); None:
            ``config.init_from`` as a DCP checkpoint directory, if set. Not used on a resume.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable[dict[str, torch.Tensor]],
        config: TrainConfig,
        run_dir: str | Path,
        *,
        callbacks: Sequence[Callback] = (),
        resume: bool = True,
        mesh: DeviceMesh | None = None,
        init_device: torch.device | None = None,
        tensorboard_dir: str | Path | None = None,
        manifest_fields: dict | None = None,
        warm_start: WarmStart | None = None,
    ) -> None:
        if warm_start is None and config.init_from:
            warm_start = WarmStart(Path(config.init_from), optimizer=config.init_optimizer)
        self.warm_start = warm_start
        self.config, self.loader, self.callbacks, self.resume = config, loader, callbacks, resume
        self.manifest_fields = dict(manifest_fields or {})
        self.model = parallelize(model, config, mesh)
        if init_device is not None:  # built on meta: allocate the shards, then the weights
            materialize(self.model, init_device, config.seed)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.guard = SpikeGuard(
            config.spike_k, config.spike_window, skip=config.spike_policy != "log"
        )
        self.run_dir = Path(run_dir)
        # A URL stays a string: Path("s3://b/x") would collapse the "//".
        self.checkpoint_dir = location(config.checkpoint_dir or self.run_dir / "checkpoints")
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1
        self.step, self.tokens, self.skipped_total, self.consecutive_skips = 0, 0, 0, 0
        self.spikes_total, self.rollbacks_total = 0, 0
        self.checkpoint: Path | str | None = None  # the newest one saved or resumed from
        self._pending: PendingCheckpoint | None = None  # an asynchronous save in flight
        self.metrics = None
        if self.rank == 0:
            path = self.run_dir / METRICS_FILE
            wandb = _wandb_kwargs(config, self.run_dir) if config.wandb else None
            self.metrics = MetricsWriter(path, tensorboard_dir=tensorboard_dir, wandb=wandb)
        self.spikes = SpikeLog(self.run_dir / "spikes.jsonl" if self.rank == 0 else None)
        self.last_metrics: dict[str, float] = {}
        self.unchecked: list[tuple[int, torch.Tensor]] = []  # (step, finite flag) not yet read
        self._watchdog = StepWatchdog(0, self.run_dir, self.rank)  # off until fit() runs

    def fit(self) -> dict[str, float]:
        """Train until ``config.steps``; returns the last step's metrics (and callback results)."""
        self._start()
        self.model.train()
        with StopSignals() as stop:  # before the watchdog: its SIGTERM dump chains to this
            signum = self._fit(stop)
        if self.metrics is not None:
            self.metrics.close()
        if signum:
            raise TrainingStopped(signum, self.step, self.checkpoint)
        return self.last_metrics

    def _fit(self, stop: StopSignals) -> int:
        """The loop under the watchdog; the signal it stopped on (0 when it ran to the end)."""
        timeout, auto = self.config.step_timeout_s, self.config.watchdog
        watchdog = self._watchdog = StepWatchdog(timeout, self.run_dir, self.rank, auto=auto)
        try:
            with SyncedGC(self.config.gc_every) as collector:
                signum = self._loop(watchdog, collector, stop)
            self._wait_checkpoint()  # the last save is final before fit() returns
        except BaseException:
            self._finish_local_save()
            raise
        finally:
            watchdog.close()
        return signum

    def _loop(self, watchdog: StepWatchdog, collector: SyncedGC, stop: StopSignals) -> int:
        batches = self._batches()
        clock = _Throughput(self.tokens, self.world_size, self.config.activation_checkpointing)
        bar = tqdm(total=self.config.steps, initial=self.step, disable=self.rank != 0, desc="train")
        first = self.step
        while self.step < self.config.steps:
            if self.step > first:  # the first step of a process compiles and warms up: not timed
                watchdog.arm(self.step + 1)
            micro = self._next_micro(batches)
            step, every = self.step + 1, self.config.checkpoint_every
            last = step == self.config.steps
            # Step 1 is always logged: the curve starts at the untrained loss.
            due = last or step == 1 or step % self.config.log_every == 0
            saving = last or (every > 0 and step % every == 0)
            metrics = train_step(
                self.model, micro, self.optimizer, self.scheduler, self.config, guard=self.guard,
                sync=due or saving,
            )  # fmt: skip
            # The ranks agree on a stop signal inside the step's timer: a peer that hung since
            # the last step makes this collective fire the watchdog, as the step's own would.
            signum = stop.agreed()  # the same on every rank: all stop after this step
            watchdog.disarm()
            if (spike := self.guard.pop_event()) is not None and self._on_spike(spike):
                bar.n = self.step  # rolled back: the steps since the checkpoint are redone
                clock.restart(self.tokens)
                continue
            if self.config.nan_policy == "stop" and not (due or saving):
                self.unchecked.append((step, finite(metrics)))  # read at the next sync
            self._advance(micro, metrics)
            if (gc_s := collector.maybe_collect(self.step)) is not None:
                metrics["gc_s"] = gc_s
            bar.update(1)
            if due:
                metrics |= clock.measure(self.tokens, self._mfu_per_token_rate(micro))
            evals = self._run_callbacks(final=last)
            # The only host sync of a step without guard or skip; a stop's checkpoint records
            # the step's metrics, so they are read then too.
            if due or saving or evals or signum:
                metrics = self._read(metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            self._log(metrics | evals, write=due or bool(evals))
            if saving:
                watchdog.arm(self.step, "save")
                self.save()
                watchdog.disarm()
            if evals or saving:
                clock.restart(self.tokens)  # eval and checkpoint time is not training throughput
            if signum:
                bar.close()
                return self._stop(signum, saved=saving)
        bar.close()
        return 0

    def _stop(self, signum: int, *, saved: bool) -> int:
        """Checkpoint the step just taken (all ranks) so a rerun loses nothing; ``signum``."""
        if not saved:
            self.save()
        log.warning("stopping after step %d on signal %d: checkpoint %s", self.step, signum,
                    self.checkpoint)  # fmt: skip
        return signum

    def _advance(self, micro: list[dict[str, torch.Tensor]], metrics: dict[str, float]) -> None:
        self.step += 1
        self.tokens += sum(b["input_ids"].numel() for b in micro) * self.world_size
        skipped = bool(metrics["skipped"])
        self.skipped_total += skipped
        self.consecutive_skips = self.consecutive_skips + 1 if skipped else 0
        if skipped:
            log.warning("step %d: update skipped (loss=%s)", self.step, float(metrics["loss"]))
        if self.consecutive_skips >= self.config.max_consecutive_skips:
            raise RuntimeError(
                f"{self.consecutive_skips} updates skipped in a row at step {self.step} "
                f"(max_consecutive_skips={self.config.max_consecutive_skips})"
            )
        metrics.update(
            tokens=float(self.tokens),
            skipped_total=float(self.skipped_total),
            spikes_total=float(self.spikes_total),
            rollbacks_total=float(self.rollbacks_total),
            micro_batches=float(len(micro)),
        )

    def _next_micro(self, batches: Iterator[dict[str, torch.Tensor]]) -> list[dict]:
        """The next step's micro-batches (``grad_accum_steps``, fewer during a batch-size
        warmup), noting where each came from for ``spikes.jsonl``."""
        guarded = self.guard.k > 0  # no guard, no spikes: the loader's position is not needed
        stateful = hasattr(self.loader, "state_dict")
        micro, records, count = [], [], 1
        while len(micro) < count:
            position = self.loader.state_dict() if guarded and stateful else None
            micro.append(next(batches))
            if guarded:
                records.append(batch_record(position, micro[-1]))
            if len(micro) == 1:  # the step's size is counted in micro-batches of this many tokens
                tokens = micro[0]["input_ids"].numel() * self.world_size
                count = micro_batches_at(self.tokens, tokens, self.config)
        if not guarded:
            return micro
        # Only a rollback blames the steps since the checkpoint; other policies need this one.
        keep = self.config.spike_policy == "rollback" and self.checkpoint is not None
        self.spikes.record_step(self.step + 1, records, keep=keep)
        return micro

    def _on_spike(self, spike: dict[str, float]) -> bool:
        """Count and record a spike of the step just run; True if it rolled the run back."""
        self.spikes_total += 1
        policy = self.config.spike_policy
        action = {"skip": "skipped", "log": "logged", "rollback": "rolled_back"}[policy]
        if action == "rolled_back" and self.checkpoint is None:
            log.warning("step %d: loss spike and no checkpoint yet: skipped, not rolled back",
                        self.step + 1)  # fmt: skip
            action = "skipped"
        if action == "rolled_back" and self.rollbacks_total >= self.config.max_rollbacks:
            action = "stopped"
        window = (
            self.spikes.window if action in ("rolled_back", "stopped") else self.spikes.window[-1:]
        )
        self.spikes.write(
            {"step": self.step + 1, **spike, "policy": policy, "action": action, "window": window}
        )
        if action == "stopped":
            raise RuntimeError(
                f"loss spike at step {self.step + 1} (loss={spike['loss']:.4g} > "
                f"{spike['threshold']:.4g}) after {self.rollbacks_total} rollbacks "
                f"(max_rollbacks={self.config.max_rollbacks}); see {self.spikes.path}"
            )
        if action == "logged":
            log.warning("step %d: loss spike (loss=%.4g > %.4g), update taken",
                        self.step + 1, spike["loss"], spike["threshold"])  # fmt: skip
        if action != "rolled_back":
            return False
        self._rollback()
        return True

    def _rollback(self) -> None:
        """Restore the last checkpoint except the loader, which goes on after the spike's batch:
        the window of batches since the checkpoint is not trained on again."""
        spike_step, bases = self.step + 1, list(self.scheduler.base_lrs)
        self._wait_checkpoint()
        manifest = load_checkpoint(self.checkpoint, self.model, self.optimizer)
        self._restore(manifest, self._rank_state(manifest["rank_states"]))
        # Scale the schedule in force (earlier rollbacks included), not the checkpoint's.
        self.scheduler.base_lrs = [base * self.config.spike_lr_factor for base in bases]
        _apply_schedule(self.scheduler)
        self.rollbacks_total += 1
        self.consecutive_skips = 0
        self.spikes.clear()
        log.warning(
            "step %d: loss spike, rolled back to %s (rollback %d of at most %d); the loader "
            "goes on after the spike, lr schedule now x%.4g",
            spike_step, self.checkpoint, self.rollbacks_total, self.config.max_rollbacks,
            self.scheduler.base_lrs[0] / self.config.lr,
        )  # fmt: skip
        self._truncate_metrics("they are trained again on new data after a rollback")

    def _read(self, metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
        """The step's metrics as floats, after checking the steps that skipped the NaN check."""
        self._check_finite()
        return to_floats(metrics)

    def _check_finite(self) -> None:
        """``nan_policy="stop"``: raise if a step since the last check had a non-finite loss."""
        unchecked, self.unchecked = self.unchecked, []
        if not unchecked or bool(torch.stack([ok for _, ok in unchecked]).all()):
            return
        bad = next(step for step, ok in unchecked if not ok)
        raise FloatingPointError(f"non-finite loss or grad_norm at step {bad} (nan_policy=stop)")

    def _run_callbacks(self, *, final: bool) -> dict[str, float]:
        results: dict[str, float] = {}
        for index, callback in enumerate(self.callbacks):
            every = self.config.eval_every or callback.every
            if final or (every > 0 and self.step % every == 0):
                self._watchdog.arm(self.step, f"callback {index}")
                results |= callback(self.step, self.model)
                self._watchdog.disarm()
                self.model.train()
        return results

    def _log(self, metrics: dict[str, float], *, write: bool) -> None:
        self.last_metrics = metrics
        if self.metrics is not None and write:
            self.metrics.write(self.step, metrics)

    def _mfu_per_token_rate(self, micro: list[dict[str, torch.Tensor]]) -> float:
        """MFU contributed by one token/s (0 when ``peak_flops`` is not set)."""
        if not self.config.peak_flops or not hasattr(self.model, "flops_per_token"):
            return 0.0
        seq_len = micro[0]["input_ids"].shape[1]
        return self.model.flops_per_token(seq_len) / (self.config.peak_flops * self.world_size)

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            empty = True
            for batch in self.loader:
                empty = False
                yield batch
            if empty:
                raise ValueError("the loader yielded no batches")

    def _start(self) -> None:
        remove_stale_tmp(self.checkpoint_dir)  # first: a save that filled the disk frees it
        if self.rank == 0:
            _write_run_info(self.run_dir, self.config, self.world_size)
        path = latest_checkpoint(self.checkpoint_dir, _RESUME_FIELDS) if self.resume else None
        if path is None:
            if self.resume:
                _refuse_unusable_checkpoints(self.checkpoint_dir)
            self._warm_start()
            torch.manual_seed(self.config.seed)
            random.seed(self.config.seed)
            self._truncate_metrics()
            return
        if self.warm_start is not None:
            log.info("resuming from the run's own %s: init_from %s is not read", path,
                     self.warm_start.path)  # fmt: skip
        manifest = load_checkpoint(path, self.model, self.optimizer)
        self._check_resumed_config(path, manifest)
        state = self._rank_state(manifest["rank_states"])
        self._restore(manifest, state)
        _apply_schedule(self.scheduler)
        self.spikes_total = manifest.get("spikes_total", 0)
        self.rollbacks_total = manifest.get("rollbacks_total", 0)
        if state["loader"] is not None:
            self.loader.load_state_dict(state["loader"])
        self.checkpoint = path
        self._truncate_metrics()
        log.info("resumed from %s at step %d", path, self.step)

    def _warm_start(self) -> None:
        """A fresh start from ``warm_start``'s weights (checked first, every mismatch in one
        error); optimizer moments too if asked, while step, schedule and loader start at 0."""
        if self.warm_start is None:
            return
        self.warm_start.check(self.model)
        self.warm_start.load(self.model, self.optimizer)
        _apply_schedule(self.scheduler)  # the step-0 LR, whatever a loaded optimizer held

    def _restore(self, manifest: dict, state: dict) -> None:  # reads _RESUME_FIELDS
        """Scheduler, guard, counters and RNG from a loaded checkpoint (not the loader)."""
        self.scheduler.load_state_dict(manifest["scheduler"])
        self.guard.load_state_dict(manifest["guard"])
        self.step, self.tokens = manifest["step"], manifest["tokens"]
        self.skipped_total = manifest["skipped_total"]
        self.last_metrics = manifest.get("metrics", {})
        set_rng_state(state["rng"])

    def _truncate_metrics(
        self, why: str = "no checkpoint covers them, so they are trained again"
    ) -> None:
        """Drop metric lines past the current step, saying so: those steps are taken again."""
        if self.metrics is None:
            return
        dropped = self.metrics.truncate_after(self.step)
        if dropped:
            log.warning(
                "dropped %d metrics records after step %d from %s: %s",
                dropped,
                self.step,
                self.metrics.path,
                why,
            )

    def _check_resumed_config(self, path: Path, manifest: dict) -> None:
        """Refuse a checkpoint past ``steps``; log a new length and changed settings."""
        done, recorded = manifest["step"], manifest.get("config", {})
        if done > self.config.steps:
            raise ValueError(
                f"{path} is at step {done}, past steps={self.config.steps}: a shorter run "
                "cannot continue this one; start it in a new run directory"
            )
        changed = trajectory_changes(recorded, self.config)
        if changed:
            log.warning(
                "resuming %s with settings that change the updates: %s",
                path,
                ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items()),
            )
        old_steps = recorded.get("steps", self.config.steps)
        if old_steps != self.config.steps and done < self.config.steps:
            # The schedule is a pure function of (step, config): the new length reshapes the
            # rest of the decay, which can raise the LR above the one the last step used.
            before = lr_at(done - 1, dataclasses.replace(self.config, steps=old_steps))
            log.warning(
                "steps changed from %d to %d since %s: the %s LR schedule is recomputed for %d "
                "steps, so step %d trains at lr=%.4g (step %d used lr=%.4g)",
                old_steps,
                self.config.steps,
                path,
                self.config.schedule,
                self.config.steps,
                done + 1,
                lr_at(done, self.config),
                done,
                before,
            )

    def _rank_state(self, states: list[dict]) -> dict:
        """This rank's saved state; from another world size, rank 0's (see below)."""
        if len(states) == self.world_size:
            return states[self.rank]
        # The loader's position is global (the same on every rank), and the loader itself
        # refuses a state it cannot honour on this world size. RNG streams cannot be split or
        # merged: every rank continues rank 0's (dropout masks differ from the original run).
        log.warning(
            "resuming a %d-rank checkpoint on %d ranks: loader position and RNG state of rank 0",
            len(states), self.world_size,
        )  # fmt: skip
        return states[0]

    def _wait_checkpoint(self) -> None:
        """Block until an asynchronous save in flight is final (collective)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.wait()

    def _finish_local_save(self) -> None:
        """On an error: let this rank's save in flight end (no collective; a peer may be gone),
        so a resume finds it; a save that cannot end stays a ``.tmp`` that resume ignores."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.wait(collective=False, timeout=60)
            except Exception as e:  # the original error matters more
                log.warning("checkpoint %s not completed: %s", pending.final, e)

    def save(self) -> Path:
        """Checkpoint everything needed to resume at the current step (collective)."""
        self._check_finite()  # never checkpoint weights updated by a non-finite step
        loader_state = self.loader.state_dict() if hasattr(self.loader, "state_dict") else None
        manifest = {
            **self.manifest_fields,
            "tokens": self.tokens,
            "skipped_total": self.skipped_total,
            "spikes_total": self.spikes_total,
            "rollbacks_total": self.rollbacks_total,
            "config": dataclasses.asdict(self.config),
            "scheduler": self.scheduler.state_dict(),
            "guard": self.guard.state_dict(),
            "metrics": self.last_metrics,
            "world_size": self.world_size,
        }
        rank_state = {"loader": loader_state, "rng": get_rng_state()}
        self._wait_checkpoint()  # one save in flight at a time
        save = async_save_checkpoint if self.config.async_checkpoint else save_checkpoint
        saved = save(
            self.checkpoint_dir,
            self.step,
            self.model,
            self.optimizer,
            manifest=manifest,
            rank_state=rank_state,
            keep=self.config.keep_checkpoints,
        )
        if isinstance(saved, PendingCheckpoint):
            self._pending, saved = saved, saved.final
        self.checkpoint = saved
        self.spikes.clear()  # a rollback now returns here: earlier batches are not to blame
        return self.checkpoint


def _apply_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set the restored optimizer's LRs from the schedule at the resumed step.

    The optimizer state holds the LR the old schedule gave; under a new ``steps`` the first
    resumed step would otherwise still use it. Unchanged configs get the same value back.
    """
    groups = scheduler.optimizer.param_groups
    for group, base, fn in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        set_lr(group, base * fn(scheduler.last_epoch))


def _wandb_kwargs(config: TrainConfig, run_dir: Path) -> dict:
    """``wandb.init`` arguments: the run's folder name and config, files under ``run_dir``."""
    return {
        "dir": run_dir / "wandb",
        "project": config.wandb_project,
        "name": run_dir.name,
        "mode": config.wandb_mode,
        "config": dataclasses.asdict(config),
    }


def _refuse_unusable_checkpoints(checkpoint_dir: Path | str) -> None:
    """Checkpoints that all fail verification are an error, never a silent restart at step 0."""
    found = list_checkpoints(checkpoint_dir)
    if not found:
        return
    reasons = "; ".join(f"{path} ({verify_checkpoint(path)})" for path in found)
    raise CheckpointError(
        f"no valid checkpoint to resume from, every one is invalid: {reasons}. Move them "
        "away to start again from step 0 (or pass resume=False)"
    )


def _write_run_info(run_dir: Path, config: TrainConfig, world_size: int) -> None:
    """``<run_dir>/run.json``: resolved config, versions, device, git revision (atomically)."""
    info = {"config": dataclasses.asdict(config), "world_size": world_size, **provenance()}
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=1))


class _Throughput:
    """Tokens/s (total and per device), MFU and HFU over the interval since the previous
    measurement, and the peak GPU memory in it."""

    def __init__(self, tokens: int, world_size: int = 1, recompute: bool = False) -> None:
        self.world_size = world_size
        # Activation checkpointing runs each block's forward twice: 8N instead of 6N FLOPs.
        self.hardware_factor = 4 / 3 if recompute else 1.0
        self.restart(tokens)

    def restart(self, tokens: int) -> None:
        self.tokens, self.time = tokens, time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def measure(self, tokens: int, mfu_per_token_rate: float) -> dict[str, float]:
        now = time.perf_counter()
        rate = (tokens - self.tokens) / max(now - self.time, 1e-9)
        out = {"tokens_per_s": rate, "tokens_per_s_per_device": rate / self.world_size}
        if mfu_per_token_rate:
            out["mfu"] = rate * mfu_per_token_rate
            out["hfu"] = out["mfu"] * self.hardware_factor
        if torch.cuda.is_available():
            out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        self.restart(tokens)
        return out
