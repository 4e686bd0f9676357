"""One function per pipeline stage: build the package objects from the config, call them, in order.

Each takes the resolved config and the run directory and returns a small JSON-able summary that
the pipeline records in `stages.json` and the report reads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from llm_formats import rundir as layout
from llm_formats.atomic import atomic_write_text
from llm_formats.checkpoint import MANIFEST, step_of
from llm_formats.device import resolve_device
from llm_formats.documents import curated_sources, read_documents
from llm_formats.eval_results import read_summary
from llm_formats.heldout import read_heldout
from llm_formats.shards import SHARD_STATS_FILE, read_shard_stats
from llm_train import TrainConfig
from pretrain import distributed
from pretrain.config import PretrainConfig
from pretrain.rundir import RunError, checkpoint_dir, checkpoint_name, read_run_json

log = logging.getLogger(__name__)


def check_inputs(config: PretrainConfig, names: list[str]) -> None:
    """Fail before anything is written when an input path the stages need is missing."""
    if "curate" in names:
        from llm_data.readers import resolve_source_files

        for source in config.data.sources:
            resolve_source_files(source)  # raises InputError naming the source and path
    if "eval" in names:
        for path in config.eval.tasks:
            if not Path(path).is_file():
                raise FileNotFoundError(f"eval.tasks: task file {path} does not exist")


def curate(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    from llm_data import run_curation
    from llm_data.curation import STATS_FILE

    out = run_dir / layout.CURATED
    on_slurm = _on_slurm(config, "curate")
    stats = run_curation(dataclasses.replace(config.data, output_dir=str(out), overwrite=True))
    if on_slurm:
        _wait_for_slurm_stage("curate", stats, out / STATS_FILE)
        stats = json.loads((out / STATS_FILE).read_text())
    keys = ("in", "kept", "removed", "removed_by", "counted")
    counts = {
        source: {s["stage"]: {k: s[k] for k in keys if k in s} for s in r["stages"]}
        for source, r in stats.items()
    }
    kept = Counter(group for _, group in iter_curated(run_dir))  # language for web pages
    return {
        "counts": counts,
        "documents": {s: r["documents_out"] for s, r in stats.items()},
        "kept_per_group": dict(sorted(kept.items())),
    }


def _on_slurm(config: PretrainConfig, stage: str) -> bool:
    """Whether `stage` submits datatrove job arrays (data.executor=slurm); that is done, and
    waited for, by the stage's job in the chain of `pretrain launch-slurm --all` only."""
    import os

    if config.data.executor != "slurm":
        return False
    if "SLURM_JOB_ID" not in os.environ:
        raise ValueError(
            f"data.executor=slurm: the {stage} stage's job arrays are submitted and waited for "
            f"by the {stage} job of `pretrain launch-slurm --all` (SLURM_JOB_ID is not set "
            "here); run that, or use data.executor=local"
        )
    return True


def _wait_for_slurm_stage(stage: str, submitted: dict[str, Any], marker: Path) -> None:
    """Wait for the job arrays a stage submitted, so that the jobs after this one in the chain
    (afterok on it) find the stage's output. The last job writes `marker` in the work folder
    and renames that to the output: a work folder still there means it did not finish (an
    output of an earlier run may have its own `marker`)."""
    from pretrain.slurm import wait_for_jobs

    jobs = submitted["jobs"]
    log.info("%s submitted as Slurm jobs %s; waiting for them", stage, jobs)
    wait_for_jobs(list(jobs.values()))
    if Path(submitted["work_dir"]).exists() or not marker.is_file():
        raise RuntimeError(
            f"{stage}'s Slurm jobs {jobs} ended before their last one renamed the work folder to "
            f"{marker.parent}: see their logs under {submitted['work_dir']}/ (a rerun resumes "
            "the completed tasks)"
        )


def tokenizer(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    """Train on the curated text; writes tokenizer.json and tokenizer_card.json (settings, files
    and their hashes, statistics per source and language, which the report shows)."""
    from llm_tokenize import train_from_config

    tok_config = dataclasses.replace(
        config.tokenizer, sources=tokenizer_sources(config, run_dir / layout.CURATED)
    )
    tok, card = train_from_config(tok_config, run_dir)
    stats = card["statistics"]
    sources = stats["source"].values()
    return {
        "vocab_size": tok.vocab_size,
        "bytes_per_token": sum(s["bytes"] for s in sources) / sum(s["tokens"] for s in sources),
        "training_bytes": card["training"]["bytes"],
        "round_trip_failures": sum(s["round_trip_failures"] for s in sources),
        "per_source": stats["source"],
        "per_language": stats["language"],
    }


def tokenizer_sources(config: PretrainConfig, curated: Path) -> list:
    """`tokenizer.sources` with empty paths filled in as the curated output of the data source of
    that name; none given: every curated source, all text once (each written by curation)."""
    from llm_tokenize import TrainingSource

    names = [s.name for s in config.data.sources]
    if not config.tokenizer.sources:
        found = curated_sources(curated)  # a source curation emptied has no files
        return [TrainingSource(name=n, paths=[str(curated / n)]) for n in names if n in found]
    filled = []
    for source in config.tokenizer.sources:
        if not source.paths and source.name not in names:
            raise ValueError(
                f"tokenizer.sources: {source.name!r} has no paths and is not a data source "
                f"({', '.join(names)}); give paths or a data source's name"
            )
        paths = source.paths or [str(curated / source.name)]
        filled.append(dataclasses.replace(source, paths=paths))
    return filled


def shards(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    from llm_data import tokenize_to_shards
    from llm_tokenize import Tokenizer

    out = run_dir / layout.SHARDS
    on_slurm = _on_slurm(config, "shards")
    stats = tokenize_to_shards(
        run_dir / layout.CURATED,
        Tokenizer.from_file(run_dir / layout.TOKENIZER),  # the loader evaluation uses too
        out,
        seq_len=config.shards.seq_len,
        heldout_fraction=config.shards.heldout_fraction,
        seed=config.shards.seed,
        overwrite=True,
        tasks=config.shards.tasks,
        workers=config.shards.workers,
        run_config=config.data,  # the executor curation runs on: local, ray or slurm arrays
    )
    if on_slurm:  # an array of shards.tasks tasks, then a one-task finalize job
        _wait_for_slurm_stage("shards", stats, out / SHARD_STATS_FILE)
        stats = read_shard_stats(out)
    sources = {
        name: {"documents": s["docs"], "tokens": s["tokens"], "samples": s["samples"]}
        for name, s in stats["sources"].items()
    }
    heldout = sum(s["heldout_docs"] for s in stats["sources"].values())
    return {"sources": sources, "heldout_documents": heldout}


def train(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    from llm_data import build_loader
    from llm_train import Trainer
    from llm_train.checkpoint import CheckpointError
    from llm_train.host_memory import return_freed_memory_to_os
    from llm_train.plots import plot_loss

    return_freed_memory_to_os()  # else each rank's resident set grows by what steps free
    job = distributed.current()
    device = job.device or pick_device(config)
    model = _model_to_train(config, run_dir)
    warm, init_from = warm_start(config, run_dir, model)
    params, flops = model.num_params(), model.flops_per_token(config.shards.seq_len)
    loader = build_loader(  # rank and world size come from torchrun's environment
        run_dir / layout.SHARDS,
        seq_len=config.shards.seq_len,
        batch_size=config.loader.batch_size,
        mixture=config.loader,  # a MixtureConfig: proportions / epochs, schedules
        steps=config.train.steps,  # the budget the mixture table is for
        batches_per_step=config.train.grad_accum_steps,
        seed=config.loader.seed,
    )
    mixture = loader.mixture_table()  # logs a warning per source past loader.max_epochs
    callbacks = [in_loop_eval(config, run_dir, device)] if config.eval.every else []
    train_config = with_device_peak(config.train, device)
    trainer = Trainer(
        model,
        loader,
        train_config,
        run_dir,
        callbacks=callbacks,
        mesh=job.mesh,
        init_device=device,  # each rank initialises its own shards there (init_weights(seed))
        tensorboard_dir=tensorboard_dir(config, run_dir) if job.main else None,
        manifest_fields=checkpoint_fields(config, run_dir) | init_from,
        warm_start=warm,
    )
    try:
        final = trainer.fit()
    except CheckpointError as e:
        raise RunError(f"{e}; or run `pretrain train --restart` to delete them") from None
    if job.main:
        plot_loss(run_dir / layout.METRICS, run_dir / layout.LOSS_PLOT)
    return {
        "params": params,
        "flops_per_token": flops,
        "steps": trainer.step,
        "tokens": trainer.tokens,
        "final_loss": final.get("loss"),
        "device": str(device),
        "world_size": job.world,
        "global_batch": config.loader.batch_size * config.train.grad_accum_steps * job.world,
        "peak_flops": train_config.peak_flops,
        "mixture": mixture.to_dict(),
        **init_from,
    }


def warm_start(config: PretrainConfig, run_dir: Path, model) -> tuple[Any, dict[str, Any]]:
    """(``train.init_from`` resolved and checked against ``model`` (meta or real, before any
    weights are materialised) or None, ``{"init_from": where the first weights came from}``
    for the manifests, ``stages.json`` and the report). A run with checkpoints of its own
    resumes from them: the source is not read again (it may be gone), its record is kept."""
    from llm_train.checkpoint import list_checkpoints
    from pretrain.warm_start import resolve_init_from

    if not config.train.init_from:
        return None, {}
    own = list_checkpoints(checkpoint_dir(run_dir, config.train.checkpoint_dir))
    if own:
        log.info("train.init_from=%s not read: the run resumes from its own checkpoints",
                 config.train.init_from)  # fmt: skip
        return None, _recorded_init_from(own[0])
    warm = resolve_init_from(config, run_dir, model.config)
    warm.check(model)  # every mismatch now, not after the model is materialised and sharded
    return warm, {"init_from": warm.record}


def _recorded_init_from(checkpoint: Path | str) -> dict[str, Any]:
    from llm_formats.checkpoint import ManifestError
    from llm_train.checkpoint import read_checkpoint_manifest

    try:
        return {"init_from": read_checkpoint_manifest(checkpoint)["init_from"]}
    except (ManifestError, KeyError, OSError):
        return {}  # the trainer names what is wrong with the checkpoint when it resumes


def checkpoint_fields(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    """What every checkpoint's manifest records so that it describes itself: the model config
    (eval and convert build the model from it) and the tokenizer card's sha256 (which tokenizer
    its token ids belong to)."""
    from llm_formats.atomic import sha256_file

    card, tokenizer = run_dir / layout.TOKENIZER_CARD, run_dir / layout.TOKENIZER
    return {
        "model_config": dataclasses.asdict(model_config(config, run_dir)),
        "tokenizer_card_sha256": sha256_file(card) if card.is_file() else None,
        # The card also records its training time, so only tokenizer.json's bytes identify the
        # token ids: a retrained identical tokenizer has another card hash but the same file.
        "tokenizer_sha256": sha256_file(tokenizer) if tokenizer.is_file() else None,
    }


def _model_to_train(config: PretrainConfig, run_dir: Path):
    """The model, built on the meta device in every process: the trainer shards it (under
    torchrun), allocates it on the run's device and runs ``init_weights(seed=train.seed)``, so
    each rank draws only its own shards and 1 or N processes start from the same weights, the
    ones ``build_model`` gives."""
    from llm_model import Transformer

    with torch.device("meta"):
        return Transformer(model_config(config, run_dir))


def evaluate(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    """Bits per byte (held-out text, per source and per named set) and every task, scored
    with the newest checkpoint. Per-item records and metrics go to ``eval/`` after each task;
    items too long for the model are skipped and named, never failing the other tasks.

    Under torchrun every rank loads the weights (whole, or sharded: `eval_sharded`) and scores
    a share of the batches (llm_eval's ``ranks``); rank 0 writes the results, which equal
    one process's."""
    from llm_eval import Ranks, bits_per_byte, bits_per_byte_sets, run_suite
    from llm_tokenize import Tokenizer

    job = distributed.current()
    device = job.device or pick_device(config)
    model, path, step = load_trained_model(config, run_dir, device, job)
    sharded = job.world > 1 and _is_sharded(model)
    ranks = Ranks(rank=job.rank, world=job.world, lockstep=sharded)
    tok = Tokenizer.from_file(run_dir / layout.TOKENIZER)
    texts = heldout_texts(run_dir, config.eval.heldout_docs)
    seq_len = config.shards.seq_len
    kwargs = {"batch_size": config.eval.batch_size, "device": device, "ranks": ranks}
    # Which weights were scored: the newest checkpoint, named relative to the run (or its URL).
    checkpoint = path if isinstance(path, str) else path.relative_to(run_dir).as_posix()
    result: dict[str, Any] = {"step": step, "checkpoint": checkpoint}
    result["precision"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    result.update(world_size=job.world, sharded=sharded)  # how it ran (not what it scored)
    if texts:
        result.update(bits_per_byte(model, tok, texts, seq_len=seq_len, **kwargs))
    sets = bpb_sets(config, run_dir)
    by_set = bits_per_byte_sets(model, tok, sets, seq_len=seq_len, **kwargs)
    result["bpb_sets"] = {name: m["bpb"] for name, m in by_set.items()}
    out = run_dir / layout.EVAL_DIR
    result["tasks"] = run_suite(
        model,
        tok,
        config.eval.tasks,
        max_seq_len=seq_len,
        limit=config.eval.limit or None,
        autocast=config.eval.autocast and device.type == "cuda",
        output_dir=out,
        metadata={"model": checkpoint, "step": step, "tokenizer": layout.TOKENIZER},
        **kwargs,
    )
    if job.main:  # rank 0 wrote eval/ (the others return what the pipeline does not record)
        summary = read_summary(out)
        result["skipped"] = summary["skipped"]
        result["aggregate"] = summary.get("aggregate", {})
        result["per_item"] = out.relative_to(run_dir).as_posix()
        atomic_write_text(run_dir / layout.EVAL_SUMMARY, json.dumps(result, indent=2))
    return result


def eval_model(spec: str | None, device: str = "cpu"):
    """Our checkpoint for ``llm-eval run --model pretrain.stages:eval_model --model-arg SPEC``:
    SPEC is a run directory (its newest checkpoint) or a checkpoint directory, wherever it lies.
    The model is built from the checkpoint's manifest; the tokenizer is the checkpoint's own
    ``tokenizer.json`` if it has one, else its run's."""
    from llm_eval.adapters import LoadedModel
    from llm_tokenize import Tokenizer
    from llm_train.checkpoint import list_checkpoints

    if not spec:
        raise ValueError("pretrain.stages:eval_model needs --model-arg <run dir or checkpoint>")
    path = Path(spec)
    if not (path / MANIFEST).is_file():  # a run directory: its newest checkpoint
        found = list_checkpoints(path / layout.CHECKPOINTS)
        if not found:
            raise FileNotFoundError(f"no checkpoint under {path / 'checkpoints'}")
        path = found[0]
    model, manifest = load_checkpoint_model(path, torch.device(device))
    tok_path = path / layout.TOKENIZER
    if not tok_path.is_file():
        tok_path = path.parent.parent / layout.TOKENIZER
    check_tokenizer(manifest, path, tok_path)
    tokenizer = Tokenizer.from_file(tok_path)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        max_seq_len=model.config.max_seq_len,
        metadata={
            "model": str(path),
            "step": manifest["step"],
            "tokenizer": str(tok_path),
            "params": sum(p.numel() for p in model.parameters()),
        },
    )


def check_tokenizer(manifest: dict, checkpoint: Path, tokenizer: Path) -> None:
    """Refuse a tokenizer.json that is not the one ``checkpoint`` was trained with (``manifest``
    records the file's sha256): another tokenizer's ids would be scored as if they were its.
    The eval stage needs no such check: the run's training record (``trained_on``) is checked
    before any stage runs; this is for a checkpoint evaluated on its own."""
    from llm_formats.atomic import sha256_file

    want = manifest.get("tokenizer_sha256")
    if want and tokenizer.is_file() and (have := sha256_file(tokenizer)) != want:
        raise RunError(
            f"{tokenizer} is not the tokenizer {checkpoint} was trained with (its manifest "
            f"records sha256 {want[:12]}..., the file has {have[:12]}...)"
        )


def load_checkpoint_model(
    path: Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    mesh=None,
    shard: str = "never",
):
    """(model in eval mode, manifest) of checkpoint ``path``, from nothing but its directory:
    the model config is the manifest's and only the weights are read (no optimizer).

    The model is built on the meta device in ``dtype``, allocated on ``device`` (under
    torchrun, sharded over ``mesh`` with FSDP2 as ``shard`` (`eval_sharded`) decides:
    `llm_eval.ranks.shard_model`) and the checkpoint's weights are read straight into it: no
    fp32 copy, no initialisation, no gradients."""
    from llm_eval.ranks import shard_model
    from llm_formats.checkpoint import ManifestError, manifest_model_config
    from llm_model import ModelConfig, Transformer
    from llm_train.checkpoint import load_model_weights, read_checkpoint_manifest

    fields = manifest_model_config(read_checkpoint_manifest(path), path)
    try:
        config = ModelConfig(**fields)
    except (TypeError, ValueError) as e:
        raise ManifestError(f"{path}/{MANIFEST}: field 'model_config' is invalid: {e}") from None
    with torch.device("meta"):
        model = Transformer(config).to(dtype).requires_grad_(False)
    size = sum(p.numel() for p in model.parameters()) * dtype.itemsize
    if mesh is not None and eval_sharded(shard, size, device, mesh.size()):
        shard_model(model, mesh)
    model.to_empty(device=device)  # every tensor is a parameter, so the checkpoint fills all
    manifest = load_model_weights(path, model)
    return model.eval(), manifest


def eval_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``eval.precision``: "auto" is bf16 on CUDA and fp32 elsewhere (CPU scores unchanged)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


def eval_sharded(shard: str, param_bytes: int, device: torch.device, world: int) -> bool:
    """``eval.shard`` under torchrun: "auto" shards when the weights would take more than
    `SHARD_ABOVE` of the device's memory (never on a CPU, whose memory the ranks share)."""
    if world == 1 or shard == "never":
        return False
    if shard == "always":
        return True
    if device.type != "cuda":
        return False
    return param_bytes > SHARD_ABOVE * torch.cuda.get_device_properties(device).total_memory


# whole weights above this fraction of a device's memory are sharded (eval.shard=auto): the
# rest holds activations, the head's logits and the allocator's slack
SHARD_ABOVE = 0.5


def _is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def bpb_sets(config: PretrainConfig, run_dir: Path) -> dict[str, list[str]]:
    """Named text sets for bits per byte: the held-out documents per source
    (``heldout/<source>``), per source and language where a source has several
    (``heldout/<source>/<language>``), and each ``eval.bpb_sets`` file (texts never trained on).
    Bits per byte do not depend on the tokenizer, so these compare across runs."""
    from llm_eval.texts import load_texts

    sets: dict[str, list[str]] = defaultdict(list)
    by_language: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    path = run_dir / layout.HELDOUT
    if path.is_file():
        for doc in read_heldout(path):
            sets[f"heldout/{doc.source}"].append(doc.text)
            if doc.language:
                by_language[doc.source][doc.language].append(doc.text)
    for source, languages in sorted(by_language.items()):
        if len(languages) > 1:
            for language, texts in sorted(languages.items()):
                sets[f"heldout/{source}/{language}"] = texts
    for name, file in config.eval.bpb_sets.items():
        sets[name] = load_texts(file)
    return dict(sets)


def report(config: PretrainConfig, run_dir: Path) -> dict[str, Any]:
    from pretrain.report import write_report

    return {"path": str(write_report(run_dir))}


# --- helpers shared by the stages -------------------------------------------------------------


def pick_device(config: PretrainConfig) -> torch.device:
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    device = resolve_device(
        config.run.device, cuda_available=torch.cuda.is_available(), setting="run.device"
    )
    return torch.device(device)


def with_device_peak(train: TrainConfig, device: torch.device) -> TrainConfig:
    """``train`` with the device's peak FLOP/s for MFU, unless set; a CPU has none (no MFU)."""
    from llm_train.hardware import peak_flops_for_device

    if train.peak_flops or device.type != "cuda":
        return train
    peak = peak_flops_for_device(torch.cuda.get_device_name(device))
    if not peak:
        log.info("no peak FLOP/s known for %s: set train.peak_flops to log MFU", device)
    return dataclasses.replace(train, peak_flops=peak)


def tensorboard_dir(config: PretrainConfig, run_dir: Path) -> Path | None:
    """``<run>/tensorboard`` when asked for and the package is installed, else None."""
    if not config.run.tensorboard:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("run.tensorboard is set but tensorboard is not installed: JSONL only")
        return None
    return run_dir / layout.TENSORBOARD


def model_config(config: PretrainConfig, run_dir: Path):
    """The configured model (sized to the tokenizer by the config), checked against the trained
    tokenizer: it may have fewer tokens than asked for (too little text), never more."""
    from llm_tokenize import Tokenizer

    vocab = Tokenizer.from_file(run_dir / layout.TOKENIZER).vocab_size
    if vocab > config.model.vocab_size:
        raise ValueError(
            f"{run_dir / 'tokenizer.json'} has {vocab} tokens, more than "
            f"model.vocab_size={config.model.vocab_size}: re-run the tokenizer stage"
        )
    return config.model


def build_model(config: PretrainConfig, run_dir: Path, device: torch.device):
    """The model with the weights a training run starts from: drawn on ``device`` from
    ``train.seed`` (each parameter from its own generator, so any world size gets them)."""
    from llm_model import Transformer

    with torch.device("meta"):
        model = Transformer(model_config(config, run_dir))
    model.to_empty(device=device)
    model.init_weights(seed=config.train.seed)
    return model


def load_trained_model(config: PretrainConfig, run_dir: Path, device: torch.device, job=None):
    """(model, checkpoint path, step) of the newest checkpoint, in ``eval.precision``, whole or
    sharded over ``job``'s ranks (``eval.shard``); a corrupt one is an error, not a quiet fall
    back to an older step."""
    from llm_train.checkpoint import list_checkpoints, verify_checkpoint

    job = job or distributed.current()
    where = checkpoint_dir(run_dir, config.train.checkpoint_dir)
    found = list_checkpoints(where)
    if not found:
        raise FileNotFoundError(f"no checkpoint under {where}: train first")
    reason = verify_checkpoint(found[0])
    if reason is not None:
        older = f", or move it away to evaluate {checkpoint_name(found[1])}" if found[1:] else ""
        raise RunError(
            f"newest checkpoint {found[0]} is invalid ({reason}); not evaluating an older one "
            f"in its place. Run `pretrain train` to train from the newest valid checkpoint "
            f"and write it again{older}"
        )
    _warn_if_not_final(run_dir, found[0])
    dtype = eval_dtype(config.eval.precision, device)
    model, manifest = load_checkpoint_model(found[0], device, dtype, job.mesh, config.eval.shard)
    return model, found[0], manifest["step"]


def _warn_if_not_final(run_dir: Path, checkpoint: Path) -> None:
    trained = read_run_json(run_dir / layout.STAGES).get("train", {}).get("steps")
    step = step_of(checkpoint)
    if trained is not None and step != trained:
        log.warning("evaluating %s, but the train stage recorded %d steps", checkpoint, trained)


def in_loop_eval(config: PretrainConfig, run_dir: Path, device: torch.device):
    """The trainer's callback: bits per byte and the first 50 items of every task (zero-shot
    task files as items, YAML task files' specs as specs, generate-until included; under
    torchrun every rank runs all of it on the FSDP-sharded model, `InLoopEval`)."""
    from llm_eval import InLoopEval, load_tasks
    from llm_eval.task_spec import TaskSpec, as_spec
    from llm_tokenize import Tokenizer

    specs = [spec for path in config.eval.tasks for spec in as_spec(path)]
    zero_shot = [s for s in specs if s == TaskSpec(path=s.path)]  # a plain task file
    return InLoopEval(
        Tokenizer.from_file(run_dir / layout.TOKENIZER),
        heldout_texts(run_dir, 20),
        [item for s in zero_shot for item in load_tasks(s.path)[:50]],
        every=config.eval.every,
        seq_len=config.shards.seq_len,
        batch_size=config.eval.batch_size,
        device=device,
        bpb_sets={name: texts[:20] for name, texts in bpb_sets(config, run_dir).items()},
        specs=[s for s in specs if s not in zero_shot],
        spec_limit=50,
    )


def iter_curated(run_dir: Path) -> Iterator[tuple[str, str]]:
    """(text, group) of every curated document; group = language for web pages, else source."""
    for source, files in curated_sources(run_dir / layout.CURATED).items():
        for path in files:
            for doc in read_documents(path):
                yield doc.text, doc.language or source


def heldout_texts(run_dir: Path, limit: int) -> list[str]:
    path = run_dir / layout.HELDOUT
    if not path.is_file():
        return []
    texts = [doc.text for doc in read_heldout(path)]
    return texts[:limit] if limit else texts
