"""Run the stages in order inside one run directory, make-style.

Each stage records, in `stages.json`, a hash of the config sections it and the stages before it
depend on, and a digest of the files it reads (`inputs.py`: source files, the curated documents,
the tokenizer, the shards' stats and indexes, the newest checkpoint). A stage whose record matches
the current config and inputs and whose outputs are still there is skipped, so a second `pretrain`
resumes where the first stopped; a changed section re-runs that stage and the ones after it, and a
changed input file re-runs the stage that reads it (a stage that rebuilt identical files leaves the
later ones up to date). A stage before train never rewrites its outputs while checkpoints trained
on them exist: it refuses, naming `--restart` (`refuse_overwrite`). Settings that do not change
results (how curation runs, how often to log or checkpoint, progress bars) are left out of the
hashes: each package's config module lists its own as `RUNTIME_FIELDS`.

Training state is never thrown away silently: `checkpoints/config.json` records the config
sections the checkpoints were trained with (all but `train.steps` and the runtime settings), and a
run whose config differs from it stops with an error naming each change, unless `--restart` asks
for the checkpoints and metrics to be deleted (logged). One `pretrain` at a time holds a run
directory (see `rundir.py`). Each stage writes its outputs atomically, and a fresh run directory
that fails before any stage finished is removed, so `runs/` never holds half-written results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_data.config import RUNTIME_FIELDS as CURATION_RUNTIME_FIELDS
from llm_formats import rundir as layout
from llm_formats.atomic import atomic_write_text, sha256_file
from llm_formats.checkpoint import STEP_GLOB, step_of
from llm_tokenize.config import RUNTIME_FIELDS as TOKENIZER_RUNTIME_FIELDS
from llm_train.checkpoint import list_checkpoints, remove_checkpoints
from llm_train.config import RUNTIME_FIELDS as TRAIN_RUNTIME_FIELDS
from pretrain import distributed, stages
from pretrain.config import SHARDS_RUNTIME_FIELDS, PretrainConfig
from pretrain.inputs import digest, inputs_hash
from pretrain.loading import as_dict, to_yaml
from pretrain.rundir import (
    RunError,
    RunLock,
    checkpoint_dir,
    checkpoint_name,
    read_run_json,
    require_existing_run,
)

log = logging.getLogger(__name__)

# stage -> (function, config sections it reads; upstream sections are added below)
_STAGES: dict[str, tuple[Callable[[PretrainConfig, Path], dict[str, Any]], tuple[str, ...]]] = {
    "curate": (stages.curate, ("data",)),
    "tokenizer": (stages.tokenizer, ("tokenizer",)),
    "shards": (stages.shards, ("shards",)),
    "train": (stages.train, ("loader", "model_preset", "model", "train", "run.device")),
    "eval": (stages.evaluate, ("eval",)),
    "report": (stages.report, ()),
}
STAGES = tuple(_STAGES)

# What a finished stage leaves in the run directory (glob patterns); if one is gone it runs again.
_OUTPUTS: dict[str, tuple[str, ...]] = {
    "curate": (f"{layout.CURATED}/*",),
    "tokenizer": (layout.TOKENIZER, layout.TOKENIZER_CARD),
    "shards": (layout.SHARD_STATS,),
    "train": (layout.METRICS,),  # and a checkpoint in train.checkpoint_dir (`_missing`)
    "eval": (layout.EVAL_SUMMARY, layout.EVAL_RESULTS),
    "report": (),
}
# Settings that change neither a stage's results nor the training trajectory: each package's
# config declares its own (how curation runs, progress bars, logging and checkpoint cadence).
_RUNTIME_FIELDS = {
    "data": CURATION_RUNTIME_FIELDS,
    "tokenizer": TOKENIZER_RUNTIME_FIELDS,
    "shards": SHARDS_RUNTIME_FIELDS,
    "train": TRAIN_RUNTIME_FIELDS,
}
_NOT_HASHED = {f"{section}.{name}" for section, names in _RUNTIME_FIELDS.items() for name in names}
# Also not part of what the checkpoints were trained with: a longer run continues, on any device;
# loader.max_epochs only sets when the mixture table warns.
_NOT_TRAINING_STATE = _NOT_HASHED | {"train.steps", "run.device", "loader.max_epochs"}
_TRAINED_ON = (layout.TOKENIZER, layout.SHARD_STATS)
# The stages whose outputs the checkpoints were trained on (directly or through a later stage).
_TRAINED_FROM = STAGES[: STAGES.index("train")]


def run_pipeline(
    config: PretrainConfig, names: list[str], *, restart: bool = False, skip_done: bool = False
) -> Path:
    """Run `names` (in pipeline order) for `config`; return the run directory.

    With `restart`, the run's training state is deleted first (needs the train stage). A stage
    named alone always runs, unless `skip_done` (the Slurm chain's jobs: a rerun of the chain
    skips the finished stages).
    """
    if distributed.launched_world_size() > 1:
        return _run_distributed(config, names, restart=restart, skip_done=skip_done)
    stages.check_inputs(config, names)
    run_dir = layout.run_dir(config.run.root, config.run.name)
    if restart and "train" not in names:
        raise RunError("--restart deletes the training state to train again: add the train stage")
    if "curate" not in names:
        require_existing_run(run_dir)
    fresh = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(run_dir):
            _run_locked(config, names, run_dir, restart=restart, skip_done=skip_done)
    except BaseException:
        if fresh and not _read_records(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            log.error("removed %s: no stage finished", run_dir)
        raise
    return run_dir


def _run_distributed(
    config: PretrainConfig, names: list[str], *, restart: bool, skip_done: bool
) -> Path:
    """The train and eval stages (those of `names`, in order, each run unless `skip_done`: then
    rank 0 decides from the records, since a decision read from files on each rank could
    differ) on every rank of a torchrun job; rank 0 holds the lock and writes."""
    distributed.refuse_undistributed(names)
    stages.check_inputs(config, names)
    run_dir = layout.run_dir(config.run.root, config.run.name)
    require_existing_run(run_dir)
    with distributed.process_group(stages.pick_device(config), config.run.replicas) as job:
        lock = RunLock(run_dir) if job.main else contextlib.nullcontext()
        with lock:
            _on_main(job, lambda: _prepare(config, names, run_dir, restart=restart))
            for name in names:
                if skip_done and job.broadcast(job.main and _up_to_date(name, config, run_dir)):
                    continue
                _run_stage(name, config, run_dir, forced=True)
                job.barrier()  # rank 0 has recorded it before any rank reads the records
    return run_dir


def _on_main(job: distributed.Dist, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on rank 0 only; a RunError there stops every rank with the same message
    (instead of leaving the others waiting at the next collective)."""
    error = None
    if job.main:
        try:
            fn()
        except RunError as e:
            error = str(e)
    error = job.broadcast(error)
    if error is not None:
        raise RunError(error)


def _prepare(config: PretrainConfig, names: list[str], run_dir: Path, *, restart: bool) -> None:
    if restart:
        discard_training_state(run_dir, _checkpoints(config, run_dir))
    elif names != ["report"]:
        # before any stage overwrites what it was built on
        check_training_state(config, run_dir, training="train" in names)
    if names != ["report"]:  # the report reads the run; it does not run this config
        atomic_write_text(run_dir / layout.CONFIG, to_yaml(config))


def _run_locked(
    config: PretrainConfig, names: list[str], run_dir: Path, *, restart: bool, skip_done: bool
) -> None:
    _prepare(config, names, run_dir, restart=restart)
    for name in names:
        _run_stage(name, config, run_dir, forced=len(names) == 1 and not skip_done)


def _up_to_date(name: str, config: PretrainConfig, run_dir: Path) -> bool:
    """Whether stage `name`'s record matches the config and its input files, and its outputs
    are there (logged either way); the report is always written again."""
    record = _read_records(run_dir).get(name, {})
    if name == "report" or record.get("hash") != stage_hash(config, name):
        log.info("stage %s: running", name)
        return False
    missing = _missing(name, config, run_dir)
    inputs = inputs_hash(config, run_dir, name)
    if record.get("inputs", inputs) != inputs:  # (a record from before inputs were hashed
        # has none: its config hash decides alone)
        log.info("stage %s: its input files changed, running it again", name)
    elif not missing:
        log.info("stage %s: up to date, skipped (delete %s to redo it)", name, run_dir)
        return True
    else:
        log.warning("stage %s: missing outputs (%s), running it again", name, ", ".join(missing))
    return False


def _missing(name: str, config: PretrainConfig, run_dir: Path) -> list[str]:
    missing = [p for p in _OUTPUTS[name] if not any(run_dir.glob(p))]
    if name == "train":  # (a listing of the store when the checkpoints are there)
        checkpoints = _checkpoints(config, run_dir)
        if not list_checkpoints(checkpoints):
            missing.append(f"{checkpoints}/{STEP_GLOB}")
    return missing


def _checkpoints(config: PretrainConfig, run_dir: Path) -> Path | str:
    return checkpoint_dir(run_dir, config.train.checkpoint_dir)


def _run_stage(name: str, config: PretrainConfig, run_dir: Path, *, forced: bool) -> None:
    if forced:
        log.info("stage %s: running", name)
    elif _up_to_date(name, config, run_dir):
        return
    digest, inputs = stage_hash(config, name), inputs_hash(config, run_dir, name)
    missing = _missing(name, config, run_dir)
    if name in _TRAINED_FROM and not missing:
        refuse_overwrite(run_dir, name, _checkpoints(config, run_dir))
    job = distributed.current()
    if name == "train":
        _on_main(job, lambda: _record_training_state(config, run_dir))
    start = time.perf_counter()
    summary = _STAGES[name][0](config, run_dir)
    if not job.main:  # rank 0 alone records the stage
        return
    # The stages after this one compare their inputs' digests: if it wrote the same files, they
    # stay up to date; if not, they run again.
    records = _read_records(run_dir)
    seconds = round(time.perf_counter() - start, 2)
    records[name] = {**summary, "hash": digest, "inputs": inputs, "seconds": seconds}
    atomic_write_text(run_dir / layout.STAGES, json.dumps(records, indent=2))


def _record_training_state(config: PretrainConfig, run_dir: Path) -> None:
    check_training_state(config, run_dir)
    checkpoints = _checkpoints(config, run_dir)
    if isinstance(checkpoints, Path):  # a URL prefix needs no folder
        checkpoints.mkdir(parents=True, exist_ok=True)
    state = json.dumps(_training_state(config, run_dir), indent=1, sort_keys=True)
    atomic_write_text(run_dir / layout.TRAINING_RECORD, state)


def stage_hash(config: PretrainConfig, name: str) -> str:
    """Hash of every config section this stage and its upstream stages read."""
    return digest(_sections(config, name, _NOT_HASHED))


def _sections(config: PretrainConfig, name: str, leave_out: set[str]) -> dict[str, Any]:
    """`{section: value}` read by `name` and the stages before it, without `leave_out` keys."""
    tree = json.loads(json.dumps(as_dict(config), default=str))  # plain JSON, as recorded
    keys = [key for stage in STAGES[: STAGES.index(name) + 1] for key in _STAGES[stage][1]]
    picked = {key: _lookup(tree, key) for key in keys if key not in leave_out}
    for dotted in leave_out:
        section, _, field = dotted.partition(".")
        if isinstance(picked.get(section), dict):
            picked[section].pop(field, None)
    return picked


# --- training state: what the checkpoints were trained with -----------------------------------


def check_training_state(config: PretrainConfig, run_dir: Path, training: bool = True) -> None:
    """Refuse to run a config the run's checkpoints were not trained with (nothing is deleted).

    Without ``training`` (no train stage in this job) the global batch is not compared: it is
    ``loader.batch_size`` x this job's world size, and eval may run on any number of ranks."""
    found = list_checkpoints(_checkpoints(config, run_dir))
    if not found:
        return  # nothing to lose: a fresh run, or one that stopped before its first checkpoint
    record = run_dir / layout.TRAINING_RECORD
    fix = (
        f"To keep them, run with the config they were trained with ({run_dir / layout.CONFIG}); "
        "for a new run use another run.name; to delete them and train from step 0, add --restart"
    )
    if not record.is_file():
        raise RunError(f"{run_dir}: checkpoints without a record of their config ({record}). {fix}")
    old, new = read_run_json(record), _training_state(config, run_dir)
    if not training:
        for state in (old, new):
            state.get("loader", {}).pop("global_batch", None)
    changed = _changes(old, new)
    if changed:
        raise RunError(
            f"{run_dir} holds checkpoints (newest {checkpoint_name(found[0])}) trained with "
            "other settings or data: "
            f"{'; '.join(changed)}. {fix}"
        )
    done = step_of(found[0])
    if done > config.train.steps:
        raise RunError(
            f"{run_dir} has trained {done} steps, more than train.steps={config.train.steps}: "
            f"a shorter run cannot continue it. {fix}"
        )


def refuse_overwrite(run_dir: Path, name: str, checkpoints: Path | str | None = None) -> None:
    """Refuse to rewrite the outputs of a stage the run's checkpoints (in ``checkpoints``,
    default ``run_dir/checkpoints``) were trained on: new curated documents, tokenizer or
    shards would leave them unable to resume or be evaluated."""
    found = list_checkpoints(checkpoints or checkpoint_dir(run_dir))
    if found:
        outputs = ", ".join(_OUTPUTS[name])
        raise RunError(
            f"stage {name} would rewrite {outputs} in {run_dir}, which its checkpoints (newest "
            f"{checkpoint_name(found[0])}) were trained on; nothing was changed. To train again "
            "on new outputs, run every stage with --restart (deletes the checkpoints), or use "
            "another run.name"
        )


def discard_training_state(run_dir: Path, checkpoints: Path | str | None = None) -> None:
    """--restart: delete checkpoints (in ``checkpoints``, default ``run_dir/checkpoints``),
    metrics and what was computed from them (eval.json, eval/, the TensorBoard mirror), saying
    what."""
    outputs = (
        layout.METRICS,
        layout.SPIKES,
        layout.LOSS_PLOT,
        layout.EVAL_SUMMARY,
        layout.RUN_INFO,
    )
    files = [run_dir / n for n in outputs if (run_dir / n).exists()]
    found = remove_checkpoints(checkpoints or checkpoint_dir(run_dir))
    for path in files:
        path.unlink()
    # The metrics' TensorBoard copy goes with them, and so do the per-item eval results of the
    # deleted weights (eval/ would otherwise mix them with the new run's).
    for folder in (run_dir / layout.TENSORBOARD, run_dir / layout.EVAL_DIR):
        if folder.exists():
            shutil.rmtree(folder)
            files.append(folder)
    records = _read_records(run_dir)
    if records:
        for stale in STAGES[STAGES.index("train") :]:
            records.pop(stale, None)
        atomic_write_text(run_dir / layout.STAGES, json.dumps(records, indent=2))
    names = ", ".join([checkpoint_name(p) for p in found] + [p.name for p in files])
    names = names or "nothing (none there)"
    log.warning("--restart: deleted %s from %s", names, run_dir)


def _training_state(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    """The config sections the checkpoints depend on, and digests of the tokenizer and shards
    they were trained on: a stage re-run for missing outputs must rebuild the same ones."""
    digests = {
        name: sha256_file(run_dir / name)[:16]
        for name in _TRAINED_ON
        if (run_dir / name).is_file()  # not yet made, or gone and about to be made again
    }
    sections = _sections(config, "train", _NOT_TRAINING_STATE)
    # The updates depend on the global batch, not on how it is split over processes: a run may
    # resume on another world size with the same loader.batch_size x WORLD_SIZE.
    loader = sections.get("loader")
    if isinstance(loader, dict) and "batch_size" in loader:
        loader["global_batch"] = loader.pop("batch_size") * distributed.current().world
    return {**sections, "trained_on": digests}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every leaf that differs (lists compared whole)."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    for name in _TRAINED_ON:  # a file not (yet) there again is compared when it is
        key = f"trained_on.{name}"
        if key not in flat_new:
            flat_old.pop(key, None)
    return [
        f"{key}: {flat_old.get(key, '(unset)')} -> {flat_new.get(key, '(unset)')}"
        for key in sorted(flat_old.keys() | flat_new.keys())
        if flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= _flatten(value, f"{prefix}.{key}" if prefix else key)
    return out


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _read_records(run_dir: Path) -> dict[str, Any]:
    return read_run_json(run_dir / layout.STAGES)
