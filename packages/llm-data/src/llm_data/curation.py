"""Run curation: filter each source, then dedup every source together; output written atomically.

Stages (each a datatrove pipeline, run by `llm_data.executors`):

1. one per source: read -> [extract] -> [language ID -> Gopher (+ repetition), C4, FineWeb] ->
   PII masking -> [decontamination] -> `<work>/_work/filtered/<source>/<rank>.jsonl.gz`
   (`llm_data.pipeline`);
   what the quality filters drop goes to `<work>/excluded/<filter>/<source>/`;
2. global dedup over all sources: exact -> URL -> MinHash -> substring
   (`llm_data.dedup_stages`), writing `<work>/<source>/<rank>.jsonl.gz` and
   `<work>/excluded/<method>/<rank>.jsonl.gz` (substring: also what it cut, in `cuts/`);
3. finalize: per-stage counts to `curation_stats.json`, then `<work>` is renamed to `output_dir`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from llm_data.atomic import _alive, make_temp_dir, remove_stale_temp_dirs
from llm_data.classifier_filter import cut_stage_name, quality_cut_stages
from llm_data.config import RUNTIME_FIELDS, CurationConfig
from llm_data.decontamination import EvalIndex, build_eval_index
from llm_data.dedup_stages import DEDUP_LOGS, EXCLUDED_DIR, build_dedup_stages, dedup_methods
from llm_data.executors import Stage, read_stage_stats, run_stages, submit_slurm_with_finalize
from llm_data.filters import classifier_cuts
from llm_data.pipeline import build_source_pipeline
from llm_data.readers import InputError, read_skipped, resolve_source_files
from llm_data.substring import CUTS_DIR
from llm_data.task_pool import WorkerPool

__all__ = ["STATS_FILE", "run_curation"]

log = logging.getLogger(__name__)
STATS_FILE = "curation_stats.json"
MAX_SKIPPED_LISTED = 1000  # per source; beyond this, skipped lines are only counted
DEDUP_STAGE_NAMES = {
    "exact": "ExactDedup",
    "url": "UrlDedup",
    "minhash": "MinhashDedup",
    "substring": "SubstringDedup",
}
_WORK = "_work"  # scratch inside the work folder, removed before the rename


def run_curation(config: CurationConfig) -> dict:
    """Curate every source of `config` into `config.output_dir/<source>/*.jsonl.gz`.

    The run happens in a work folder beside `output_dir` that is renamed into place at the
    end, so a failure leaves no partial output. With `skip_completed` the work folder is
    `.<output_dir name>.partial` and is kept when the run fails or is killed: running again
    with the same config (and unchanged input files) skips the datatrove tasks already
    completed. Without it the folder is a fresh temp folder, removed on failure.

    Args:
        config: sources, filters, dedup, executor and parallelism.

    Returns:
        `{source: {"stages": [{"stage", "in", "kept", "removed", ...}], "documents_out",
        "seconds"}}` (also saved as `output_dir/curation_stats.json`); `removed` is broken
        down by reason in `removed_by`, and dedup rows also count the source of the copy each
        removed document duplicates (`duplicate_of_source`). The reader's row lists the input
        lines it skipped as `skipped: [{"file", "line", "reason"}]`. With `executor: slurm`
        the jobs are only submitted: `{"executor": "slurm", "jobs": {stage: job id},
        "work_dir": ...}`; the last job writes `output_dir`.

    Raises:
        InputError: a missing path, a corrupt file or a malformed record (named in the message).
        FileExistsError: `output_dir` exists and `overwrite` is False.
    """
    out = Path(config.output_dir).expanduser().resolve()
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"output_dir={str(out)!r} exists; set overwrite=True to replace it")
    # Resolve every source first, so that a typo in the last one fails before any work.
    inputs = {s.name: resolve_source_files(s) for s in config.sources}
    eval_index = _eval_index(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out)
    root = _work_folder(config, out, inputs)
    try:
        stages = _plan(config, inputs, root, eval_index)
        if config.executor == "slurm":
            return _submit(config, stages, root, out)
        seconds = _run(config, stages, root)
        return finalize(config, root, out, {s.name: s.step_names for s in stages}, seconds)
    except BaseException as err:
        # Bad input must change before a rerun (and so the fingerprint): nothing to resume.
        if config.skip_completed and not isinstance(err, InputError):
            log.error("curation failed; run it again with the same config to resume (%s)", root)
            _unlock(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _eval_index(config: CurationConfig) -> EvalIndex | None:
    decon = config.decontamination
    if not decon.eval_paths:
        return None
    index = build_eval_index(decon.eval_paths, decon.ngram, decon.min_words)
    log.info(
        "decontamination: %d eval items of %s indexed as %d-grams (%d shorter than %d words "
        "ignored)", index.items - index.skipped, ", ".join(index.tasks), decon.ngram,
        index.skipped, decon.min_words,
    )  # fmt: skip
    return index


def _plan(
    config: CurationConfig,
    inputs: dict[str, tuple[Path, list[str]]],
    root: Path,
    eval_index: EvalIndex | None,
) -> list[Stage]:
    """Every stage of the run: one filtering stage per source, then the dedup stages."""
    work, stages = root / _WORK, []
    filtered = work / "filtered"
    for source in config.sources:
        base, files = inputs[source.name]
        folder = work / source.name
        folder.mkdir(parents=True, exist_ok=True)
        paths_file = folder / "paths.txt"
        paths_file.write_text("\n".join(files) + "\n")
        cut = classifier_cuts(source, config)  # top fraction: scored, then cut (2 stages)
        scored, histograms = work / "scored" / source.name, work / "quality" / source.name
        steps = build_source_pipeline(
            source,
            config,
            base,
            paths_file,
            scored if cut else filtered / source.name,
            eval_index,
            folder / "skipped",
            root / EXCLUDED_DIR,  # beside the dedup stages' exclusions; _work is removed
            histograms,
        )
        tasks = min(config.tasks, len(files))
        stages.append(Stage(source.name, steps, tasks))
        if cut:
            stages += quality_cut_stages(
                source.name, tasks, config.classifier.top_fraction, scored, histograms,
                filtered / source.name, root / EXCLUDED_DIR, after=source.name,
            )  # fmt: skip
    sources = tuple(s.name for s in stages)
    return stages + build_dedup_stages(config, filtered, work / "dedup", root, after=sources)


def _run(config: CurationConfig, stages: list[Stage], root: Path) -> dict[str, float]:
    """Run the stages here (local or Ray executor); return wall seconds per stage."""
    sources = {s.name for s in config.sources}
    seconds = {}
    with WorkerPool(config.workers) as pool:
        for stage in stages:
            seconds[stage.name] = _run_stage(stage, config, root, pool, stage.name in sources)
    return seconds


def _run_stage(
    stage: Stage, config: CurationConfig, root: Path, pool: WorkerPool, is_source: bool
) -> float:
    start = time.perf_counter()
    try:
        run_stages([stage], config, root / "logs", pool)
    except InputError as err:
        raise InputError(f"source {stage.name!r}: {err}") from err
    except Exception as err:
        what = f"source {stage.name!r}" if is_source else f"stage {stage.name}"
        raise RuntimeError(f"curation of {what} failed: {err}") from err
    return round(time.perf_counter() - start, 2)


def _submit(config: CurationConfig, stages: list[Stage], root: Path, out: Path) -> dict:
    """Submit every stage and a final one-task job that runs `finalize` (Slurm)."""
    step_names = {s.name: s.step_names for s in stages}
    final = Stage("_finalize", [Finalize(config, root, out, step_names)], 1, (stages[-1].name,))
    return submit_slurm_with_finalize(stages, final, config, root, root / "logs", out)


class Finalize(PipelineStep):
    """Run `finalize` as the last Slurm job."""

    name = "🏁 Finalize curation"

    def __init__(self, config: CurationConfig, root: Path, out: Path, step_names: dict):
        super().__init__()
        self.config, self.root, self.out, self.step_names = config, root, out, step_names

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        finalize(self.config, self.root, self.out, self.step_names, {})


def finalize(
    config: CurationConfig,
    root: Path,
    out: Path,
    step_names: dict[str, list[str]],
    seconds: dict[str, float],
) -> dict:
    """Count documents per stage and source, save `curation_stats.json`, rename `root` to `out`.

    Raises:
        RuntimeError: the documents written per source differ from what the counts say.
    """
    results = {}
    for source in config.sources:
        stats = read_stage_stats(root / "logs" / source.name)
        stages = summarize_stats(stats, step_names[source.name])
        cut = cut_stage_name(source.name)
        if cut in step_names:  # the classifier's top-fraction cut: its row after the reader
            stages += summarize_stats(read_stage_stats(root / "logs" / cut), step_names[cut])[1:]
        _list_skipped(stages[0], read_skipped(root / _WORK / source.name / "skipped"))
        results[source.name] = {"stages": stages, "seconds": seconds.get(source.name)}
    _add_dedup_rows(config, root, results)
    last = next(reversed(step_names))
    written = _written_per_source(read_stage_stats(root / "logs" / last))
    for name, result in results.items():
        result["documents_out"] = result["stages"][-1]["kept"]
        if written.get(name, 0) != result["documents_out"]:
            raise RuntimeError(
                f"source {name!r}: {written.get(name, 0)} documents written but the stage "
                f"counts leave {result['documents_out']}"
            )
    dedup_seconds = sum(v for k, v in seconds.items() if k.startswith(DEDUP_LOGS))
    log.info("dedup over all sources took %.1f s", dedup_seconds)
    shutil.rmtree(root / _WORK)
    (root / STATS_FILE).write_text(json.dumps(results, indent=2))
    _replace(root, out)
    return results


def _add_dedup_rows(config: CurationConfig, root: Path, results: dict) -> None:
    """One row per dedup method and source, counted from the exclusion output."""
    for method in dedup_methods(config):
        removed: dict[str, Counter] = defaultdict(Counter)
        of_source: dict[str, Counter] = defaultdict(Counter)
        for path in sorted((root / EXCLUDED_DIR / method).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    record = json.loads(line)
                    removed[record["source"]][record["reason"]] += 1
                    of_source[record["source"]][record["duplicate_of_source"]] += 1
        cut = _substring_cuts(root / EXCLUDED_DIR / method / CUTS_DIR)
        for name, result in results.items():
            n = result["stages"][-1]["kept"]
            dropped = sum(removed[name].values())
            row = {"stage": DEDUP_STAGE_NAMES[method], "in": n, "kept": n - dropped}
            row["removed"] = dropped
            if dropped:
                row["removed_by"] = dict(sorted(removed[name].items()))
                row["duplicate_of_source"] = dict(sorted(of_source[name].items()))
            if method == "substring":
                row["counted"] = dict(cut[name])  # documents kept with spans cut from them
            result["stages"].append(row)


def _substring_cuts(folder: Path) -> dict[str, Counter]:
    """Per source: documents cut, spans cut, characters cut (substring dedup's cut records)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                c = counts[record["source"]]
                c["documents_cut"] += 1
                c["spans_cut"] += len(record["cuts"])
                c["chars_cut"] += record["chars_before"] - record["chars_after"]
    return counts


def _written_per_source(stats: PipelineStats) -> Counter:
    """Documents the final JsonlWriter wrote per source (its per-file-name counters)."""
    counts = Counter()
    for name, value in stats.stats[-1].stats.items():
        if name.endswith("/XXXXX.jsonl.gz"):
            counts[name.split("/")[0]] += int(value.total)
    return counts


_COUNTED = ("pii_", "documents_with_pii", "unsupported_")


def summarize_stats(stats: PipelineStats, names: list[str]) -> list[dict]:
    """Turn datatrove's per-step stats into `{"stage", "in", "kept", "removed"}` rows (plus
    `removed_by`, `languages` and `counted`: PII masked, unsupported languages passed through)."""
    rows = []
    for name, step in zip(names, stats.stats, strict=True):
        counters = {k: v.total for k, v in step.stats.items()}
        reasons = {
            k[len("dropped_") :]: int(v) for k, v in counters.items() if k.startswith("dropped_")
        }
        if "documents" in counters:  # a reader: documents made + lines it skipped (by reason)
            n, dropped = int(counters["documents"]), sum(reasons.values())
            row = {"stage": name, "in": n + dropped, "kept": n, "removed": dropped}
        else:
            total = int(counters.get("total", rows[-1]["kept"] if rows else 0))
            dropped = int(counters.get("dropped", 0))
            row = {"stage": name, "in": total, "kept": total - dropped, "removed": dropped}
        if reasons:
            row["removed_by"] = reasons
        langs = {k[len("lang_") :]: int(v) for k, v in counters.items() if k.startswith("lang_")}
        if langs:
            row["languages"] = langs
        # What a step changed or passed through without removing: PII masked per kind, and
        # documents in a language a quality filter has no rules for (kept, not filtered).
        counted = {k: int(v) for k, v in counters.items() if k.startswith(_COUNTED)}
        if counted:
            row["counted"] = dict(sorted(counted.items()))
        rows.append(row)
    if rows and rows[-1]["stage"] == "JsonlWriter":
        rows.pop()  # writes what the row before kept
    return rows


def _list_skipped(reader_row: dict, skipped: list[dict]) -> None:
    """Add the reader's skipped lines (file, line, reason) to its stats row, up to a cap."""
    if not skipped:
        return
    reader_row["skipped"] = skipped[:MAX_SKIPPED_LISTED]
    if len(skipped) > MAX_SKIPPED_LISTED:
        reader_row["skipped_not_listed"] = len(skipped) - MAX_SKIPPED_LISTED


def _replace(tmp: Path, out: Path) -> None:
    """Move `tmp` to `out`; an existing `out` (overwrite=True) is removed only after the swap."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# --- the work folder: a fresh temp folder, or a resumable `.partial` one -------------------


def _work_folder(config: CurationConfig, out: Path, inputs: dict) -> Path:
    if not config.skip_completed and config.executor != "slurm":
        # (Slurm jobs outlive this process: a pid-named folder would look stale to the next run.)
        return make_temp_dir(out)
    root = out.parent / f".{out.name}.partial"
    fingerprint = _fingerprint(config, inputs)
    saved = root / _WORK / "fingerprint"
    if root.exists() and (not saved.is_file() or saved.read_text() != fingerprint):
        log.info("%s was left by a run of another config or input: starting over", root)
        _check_unlocked(root)
        shutil.rmtree(root)
    elif root.exists():
        log.info("resuming from %s: completed tasks are skipped", root)
    (root / _WORK).mkdir(parents=True, exist_ok=True)
    if config.executor != "slurm":  # a lock by pid means nothing across Slurm jobs
        _lock(root)
    saved.write_text(fingerprint)
    return root


def _fingerprint(config: CurationConfig, inputs: dict) -> str:
    """Hash of what the outputs depend on: the config (not how it runs) and the input files."""
    settings = {k: v for k, v in asdict(config).items() if k not in RUNTIME_FIELDS}
    if config.classifier.enabled:  # a retrained model at the same path changes the output
        from llm_data.classifier_card import read_card

        settings["classifier_sha256"] = read_card(config.classifier.model)["model_sha256"]
    files = {}
    for name, (base, paths) in inputs.items():
        files[name] = [str(base), [(p, *_size_and_mtime(base, p)) for p in paths]]
    blob = json.dumps([settings, files], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _size_and_mtime(base: Path | str, path: str) -> tuple[int, str]:
    """Size and modification time of an input (a local file, or an fsspec URL's `base`)."""
    if isinstance(base, Path):
        stat = (base / path).stat()
        return stat.st_size, str(stat.st_mtime_ns)
    import fsspec  # a URL source (`llm_data.readers.resolve_source_files`)

    fs, root = fsspec.core.url_to_fs(base)
    info = fs.info(f"{root.rstrip('/')}/{path}")
    return info.get("size", 0), str(
        info.get("mtime") or info.get("LastModified") or info.get("created", "")
    )


def _lock(root: Path) -> None:
    _check_unlocked(root)
    (root / _WORK / "lock").write_text(f"{socket.gethostname()} {os.getpid()}")


def _unlock(root: Path) -> None:
    (root / _WORK / "lock").unlink(missing_ok=True)


def _check_unlocked(root: Path) -> None:
    lock = root / _WORK / "lock"
    if not lock.is_file():
        return
    host, pid = lock.read_text().split()
    if host == socket.gethostname() and int(pid) != os.getpid() and _alive(int(pid)):
        raise RuntimeError(f"{root} is in use by running process {pid}; wait for it to finish")
