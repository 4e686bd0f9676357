"""Training configuration: one validated dataclass that every part of the trainer reads."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["RUNTIME_FIELDS", "TrainConfig", "trajectory_changes"]

Schedule = Literal["cosine", "linear", "wsd", "constant"]
Optimizer = Literal["adamw", "lion", "adamw8bit"]
WandbMode = Literal["offline", "online"]
Precision = Literal["fp32", "bf16"]
NanPolicy = Literal["skip", "stop"]
SpikePolicy = Literal["skip", "log", "rollback"]

# Fields that change what is logged, saved or evaluated, or how fast a step runs, but not which
# updates are taken: a run may resume under new values of these. ``steps`` is neither: raising it
# continues the run, and the schedule is recomputed for the new length (see ``Trainer``).
RUNTIME_FIELDS = frozenset(
    {
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "peak_flops",
        "compile",
        "activation_checkpointing",
        "max_consecutive_skips",
        "max_rollbacks",
        "step_timeout_s",
        "watchdog",
        "gc_every",
        "async_checkpoint",
        "checkpoint_dir",
        "wandb",
        "wandb_project",
        "wandb_mode",
    }
)

_SCHEDULES = ("cosine", "linear", "wsd", "constant")
_OPTIMIZERS = ("adamw", "lion", "adamw8bit")
_WANDB_MODES = ("offline", "online")
_PRECISIONS = ("fp32", "bf16")
_NAN_POLICIES = ("skip", "stop")
_SPIKE_POLICIES = ("skip", "log", "rollback")


@dataclass(kw_only=True)
class TrainConfig:
    """How to train: steps, optimizer, LR schedule, precision, guards, logging and checkpoints.

    Attributes:
        steps: Number of optimizer steps to train for.
        lr: Peak learning rate.
        min_lr_ratio: Floor of the learning rate as a fraction of ``lr``: decaying schedules
            reach it at the last update (or where the final anneal starts).
        warmup_steps: Linear warmup length; ``lr`` is reached at step ``warmup_steps - 1``.
        schedule: Shape after warmup: cosine or linear decay, warmup-stable-decay, or constant.
        decay_fraction: For ``wsd``: fraction of ``steps`` spent in the linear decay.
        anneal_fraction: If > 0, the last ``max(1, round(anneal_fraction * steps))`` updates
            anneal linearly from the schedule's value to exactly 0 at the last update.
        optimizer: ``adamw`` (torch), ``lion`` (sign updates, one state: use a 3-10x smaller
            ``lr``, larger ``weight_decay`` and ``betas=(0.9, 0.99)``) or ``adamw8bit``
            (torchao's block-wise 8-bit states; the ``[ao]`` extra).
        weight_decay: Decoupled weight decay for matrices (never norms, biases, embeddings).
        betas: Optimizer betas (AdamW: moment decays; Lion: interpolation, state decay).
        eps: AdamW epsilon (unused by Lion).
        grad_clip: Clip the global gradient norm to this value; 0 disables clipping.
        grad_accum_steps: Micro-batches per optimizer step: the target global batch.
        batch_warmup_tokens: If > 0, the global batch ramps up over the first this many
            training tokens (see ``llm_train.batch_warmup``); 0 is off.
        batch_warmup_start_tokens: Global batch size in tokens at the start of the ramp
            (rounded up to whole micro-batches; at least one).
        float8: Train the linear layers with float8 matmuls (torchao; CUDA compute capability
            8.9+ only, an error elsewhere). Layers whose dimensions are not multiples of 16 and
            names containing one of ``float8_skip`` keep their dtype.
        float8_skip: Module-name substrings left out of the float8 conversion (e.g. the head).
        precision: ``bf16`` autocasts on CUDA; on CPU it falls back to fp32 (see ``precision.py``).
        seed: Seed for torch RNGs at the start of a fresh run.
        init_from: Warm start: a fresh run starts from these weights instead of the seeded
            initialisation, with a fresh optimizer, schedule and loader (``llm_train.warm_start``).
            The trainer reads a DCP checkpoint directory (``step_NNNNNN/``); the app also takes
            a run directory (its newest checkpoint) or a Hugging Face Llama directory. Ignored
            (logged) once the run has checkpoints of its own: it resumes from them. "" is off.
        init_optimizer: With ``init_from`` a checkpoint: also restore its optimizer state
            (moments; the LR, weight decay and betas stay this config's).
        log_every: Write a metrics line every this many steps (and at the last step).
        checkpoint_every: Save a checkpoint every this many steps; 0 saves only at the end.
        checkpoint_dir: Where checkpoints go: "" is ``<run_dir>/checkpoints``; a URL
            (``s3://bucket/run/checkpoints``, needs ``llm-train[s3]``) puts them in object
            storage, with credentials and endpoint from the environment (see the README).
        keep_checkpoints: Keep this many newest intact checkpoints (manifest, every file present
            at its recorded size; hashes were checked when written); 0 keeps all. Only older
            intact ones are deleted, after the new one is intact; damaged ones are left.
        eval_every: If > 0, run every callback at this cadence instead of its own ``every``.
        peak_flops: Peak FLOP/s of one device for MFU; 0 disables MFU logging.
        compile: ``torch.compile`` each block (applied by ``parallelize``).
        activation_checkpointing: Recompute each block's activations in backward.
        nan_policy: On a non-finite loss or gradient norm, skip the update or stop the run.
        spike_k: A loss > running mean + k * std is a spike (see ``spike_policy``); 0 disables
            the guard.
        spike_window: Number of recent (accepted) losses forming the running mean and std.
        spike_policy: What a spike does: ``skip`` its update; ``log`` it only (the update is
            taken); ``rollback``: reload the last checkpoint (model, optimizer, schedule, guard,
            RNG, step) but keep the loader where it is, so the batches since that checkpoint
            are not trained on again (``skip`` while there is no checkpoint yet). Every spike
            is counted (``spikes_total``, ``rollbacks_total``) and written by rank 0 to
            ``<run_dir>/spikes.jsonl`` with the loader positions of the batches involved.
        spike_lr_factor: Each rollback multiplies the LR schedule by this (saved in checkpoints).
        max_rollbacks: A spike that would be rollback number ``max_rollbacks + 1`` stops the
            run with an error (0: the first spike after a checkpoint stops it).
        max_consecutive_skips: Stop the run after this many skipped updates in a row.
        step_timeout_s: If > 0, a step (after the first, which compiles and warms up) that takes
            longer dumps every thread's stack to ``<run_dir>/hang-rank<R>.txt`` and exits 1.
            0 (with ``watchdog``): derived from the measured step time (``llm_train.watchdog``).
        watchdog: Watch steps, callbacks and saves for hangs with timeouts derived from their
            measured durations (at least ``watchdog.FLOOR_S``); False turns derived ones off.
        async_checkpoint: Save checkpoints with DCP's ``async_save``: training goes on once the
            state is copied to CPU memory; writing, hashing and the manifest happen in the
            background (``.tmp`` until final; one save in flight; the last is waited for).
        gc_every: If > 0, Python's automatic GC is off during training and ``gc.collect()``
            runs every this many steps on every rank (``gc_s`` in the metrics).
        wandb: Rank 0 also logs the metrics to Weights & Biases (the ``[wandb]`` extra) under
            ``<run_dir>/wandb``; ``metrics.jsonl`` stays the source of truth.
        wandb_project: The W&B project name.
        wandb_mode: ``offline`` (default: no network; upload later with ``wandb sync``) or
            ``online``. The ``WANDB_MODE`` environment variable, if set, wins.
    """

    steps: int
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    schedule: Schedule = "cosine"
    decay_fraction: float = 0.2
    anneal_fraction: float = 0.0
    optimizer: Optimizer = "adamw"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    batch_warmup_tokens: int = 0
    batch_warmup_start_tokens: int = 0
    float8: bool = False
    float8_skip: tuple[str, ...] = ()
    precision: Precision = "bf16"
    seed: int = 0
    init_from: str = ""
    init_optimizer: bool = False
    log_every: int = 10
    checkpoint_every: int = 0
    checkpoint_dir: str = ""
    keep_checkpoints: int = 3
    eval_every: int = 0
    peak_flops: float = 0.0
    compile: bool = False
    activation_checkpointing: bool = False
    nan_policy: NanPolicy = "skip"
    spike_k: float = 6.0
    spike_window: int = 100
    spike_policy: SpikePolicy = "skip"
    spike_lr_factor: float = 1.0
    max_rollbacks: int = 3
    max_consecutive_skips: int = 20
    step_timeout_s: float = 0.0
    watchdog: bool = True
    async_checkpoint: bool = False
    gc_every: int = 0
    wandb: bool = False
    wandb_project: str = "llm-train"
    wandb_mode: WandbMode = "offline"

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # OmegaConf hands back a ListConfig
        self.float8_skip = tuple(self.float8_skip)
        # in this order, so that a config with several bad fields names the same one first
        _check_schedule(self)
        _check_optimizer(self)
        _check_batch(self)
        _check_wandb(self)
        _check_precision(self)
        _check_cadence(self)
        _check_guards(self)
        _check_warm_start(self)

    @property
    def min_lr(self) -> float:
        """The learning rate that decaying schedules end at (before any final anneal)."""
        return self.lr * self.min_lr_ratio

    @property
    def anneal_steps(self) -> int:
        """Number of final updates in the linear anneal to 0 (0 when ``anneal_fraction`` is 0)."""
        if self.anneal_fraction <= 0:
            return 0
        return max(1, round(self.anneal_fraction * self.steps))


def _check_schedule(c: TrainConfig) -> None:
    """Length and learning-rate schedule: warmup and the final anneal must fit in ``steps``."""
    _require(c.steps >= 1, "steps", c.steps, "an integer >= 1")
    _require(_finite(c.lr) and c.lr > 0, "lr", c.lr, "a finite float > 0")
    _require(0 <= c.min_lr_ratio <= 1, "min_lr_ratio", c.min_lr_ratio, "in [0, 1]")
    _require(
        0 <= c.warmup_steps <= c.steps, "warmup_steps", c.warmup_steps, f"in [0, steps={c.steps}]"
    )
    _require(c.schedule in _SCHEDULES, "schedule", c.schedule, f"one of {_SCHEDULES}")
    _require(0 < c.decay_fraction <= 1, "decay_fraction", c.decay_fraction, "in (0, 1]")
    _require(0 <= c.anneal_fraction < 1, "anneal_fraction", c.anneal_fraction, "in [0, 1)")
    _require(
        c.warmup_steps + c.anneal_steps <= c.steps,
        "anneal_fraction",
        c.anneal_fraction,
        f"an anneal of at most steps - warmup_steps = {c.steps - c.warmup_steps} "
        f"steps (it is {c.anneal_steps})",
    )


def _check_optimizer(c: TrainConfig) -> None:
    """Optimizer choice and its hyperparameters, and gradient clipping."""
    _require(c.optimizer in _OPTIMIZERS, "optimizer", c.optimizer, f"one of {_OPTIMIZERS}")
    _require(c.weight_decay >= 0, "weight_decay", c.weight_decay, "a float >= 0")
    _require(
        len(c.betas) == 2 and all(0 <= b < 1 for b in c.betas),
        "betas",
        c.betas,
        "two floats in [0, 1)",
    )
    _require(c.eps > 0, "eps", c.eps, "a float > 0")
    _require(c.grad_clip >= 0, "grad_clip", c.grad_clip, "a float >= 0 (0 = off)")


def _check_batch(c: TrainConfig) -> None:
    """Accumulation and batch warmup: the ramp needs more than one micro-batch per step."""
    _require(c.grad_accum_steps >= 1, "grad_accum_steps", c.grad_accum_steps, ">= 1")
    for name in ("batch_warmup_tokens", "batch_warmup_start_tokens"):
        _require(getattr(c, name) >= 0, name, getattr(c, name), "an integer >= 0")
    _require(
        c.batch_warmup_tokens == 0 or c.grad_accum_steps > 1,
        "batch_warmup_tokens",
        c.batch_warmup_tokens,
        "0 unless grad_accum_steps > 1 (the ramp grows the micro-batches per step up to it)",
    )


def _check_wandb(c: TrainConfig) -> None:
    """The Weights & Biases mirror's mode and project."""
    _require(c.wandb_mode in _WANDB_MODES, "wandb_mode", c.wandb_mode, f"one of {_WANDB_MODES}")
    _require(bool(c.wandb_project), "wandb_project", c.wandb_project, "a name")


def _check_precision(c: TrainConfig) -> None:
    """Autocast precision (float8 needs a device to check: ``parallel.check_float8_device``)."""
    _require(c.precision in _PRECISIONS, "precision", c.precision, f"one of {_PRECISIONS}")


def _check_cadence(c: TrainConfig) -> None:
    """How often to log, save, evaluate and collect garbage; MFU peak; the hang timeout."""
    _require(c.log_every >= 1, "log_every", c.log_every, "an integer >= 1")
    for name in ("checkpoint_every", "keep_checkpoints", "eval_every", "seed", "gc_every"):
        _require(getattr(c, name) >= 0, name, getattr(c, name), "an integer >= 0")
    _require(c.peak_flops >= 0, "peak_flops", c.peak_flops, "a float >= 0 (0 = off)")
    _require(
        _finite(c.step_timeout_s) and c.step_timeout_s >= 0,
        "step_timeout_s",
        c.step_timeout_s,
        "a float >= 0 (0 = derived from the step time, or off with watchdog=false)",
    )


def _check_warm_start(c: TrainConfig) -> None:
    """``init_optimizer`` needs a source to restore the optimizer from."""
    _require(
        c.init_from or not c.init_optimizer,
        "init_optimizer",
        c.init_optimizer,
        "false unless init_from names a checkpoint",
    )


def _check_guards(c: TrainConfig) -> None:
    """The NaN and loss-spike guards: policies, spike detector, rollback and skip limits."""
    _require(c.nan_policy in _NAN_POLICIES, "nan_policy", c.nan_policy, f"one of {_NAN_POLICIES}")
    _require(c.spike_k >= 0, "spike_k", c.spike_k, "a float >= 0 (0 = off)")
    _require(c.spike_window >= 2, "spike_window", c.spike_window, "an integer >= 2")
    _require(
        c.spike_policy in _SPIKE_POLICIES,
        "spike_policy",
        c.spike_policy,
        f"one of {_SPIKE_POLICIES}",
    )
    _require(
        _finite(c.spike_lr_factor) and 0 < c.spike_lr_factor <= 1,
        "spike_lr_factor",
        c.spike_lr_factor,
        "a float in (0, 1]",
    )
    _require(c.max_rollbacks >= 0, "max_rollbacks", c.max_rollbacks, "an integer >= 0")
    _require(
        c.max_consecutive_skips >= 1,
        "max_consecutive_skips",
        c.max_consecutive_skips,
        "an integer >= 1",
    )


def trajectory_changes(recorded: dict, config: TrainConfig) -> dict[str, tuple[object, object]]:
    """``{field: (recorded value, new value)}`` for fields that change the updates a run takes.

    ``recorded`` is ``dataclasses.asdict`` of an earlier config, as stored in a checkpoint's
    manifest (JSON, so tuples are lists); ``steps`` and ``RUNTIME_FIELDS`` are not compared. A
    field the record lacks (added to ``TrainConfig`` since) is compared as its default.
    """
    new = json.loads(json.dumps(dataclasses.asdict(config)))
    defaults = json.loads(json.dumps(_defaults()))
    skip = RUNTIME_FIELDS | {"steps"}
    old = {key: recorded.get(key, defaults.get(key)) for key in new}
    return {
        key: (old[key], value)
        for key, value in new.items()
        if key not in skip and old[key] != value
    }


def _defaults() -> dict[str, object]:
    return {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _require(ok: bool, field: str, value: object, allowed: str) -> None:
    if not ok:
        raise ValueError(f"TrainConfig.{field}={value!r} is invalid: expected {allowed}")
