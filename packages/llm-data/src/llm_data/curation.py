"""Run curation: one datatrove pipeline per source, output written atomically."""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats

from llm_data.atomic import make_temp_dir, remove_stale_temp_dirs
from llm_data.config import CurationConfig, SourceConfig
from llm_data.decontamination import EvalIndex, build_eval_index
from llm_data.pipeline import build_source_pipeline
from llm_data.readers import InputError, read_skipped, resolve_source_files
from llm_data.task_pool import run_tasks

__all__ = ["STATS_FILE", "run_curation"]

log = logging.getLogger(__name__)
STATS_FILE = "curation_stats.json"
MAX_SKIPPED_LISTED = 1000  # per source; beyond this, skipped lines are only counted


def run_curation(config: CurationConfig) -> dict:
    """Curate every source of `config` into `config.output_dir/<source>/*.jsonl.gz`.

    The run happens in a temporary folder beside `output_dir` that is renamed into place at the
    end, so a failure leaves no partial output. Per-stage counts are also saved as
    `output_dir/curation_stats.json`; datatrove's logs go to `output_dir/logs/<source>/`.

    Args:
        config: sources, filters and parallelism.

    Returns:
        `{source: {"stages": [{"stage", "in", "kept", "removed", ...}], "documents_out",
        "seconds"}}`; `removed` is broken down by reason in `removed_by`. The reader's row
        also lists the input lines it skipped as `skipped: [{"file", "line", "reason"}]`.

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
    tmp = make_temp_dir(out)
    try:
        results = {
            s.name: _curate_source(s, config, *inputs[s.name], tmp, eval_index)
            for s in config.sources
        }
        shutil.rmtree(tmp / "_work")
        (tmp / STATS_FILE).write_text(json.dumps(results, indent=2))
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results


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


def _curate_source(
    source: SourceConfig,
    config: CurationConfig,
    base: Path,
    files: list[str],
    root: Path,
    eval_index: EvalIndex | None,
) -> dict:
    work = root / "_work" / source.name
    work.mkdir(parents=True)
    paths_file = work / "paths.txt"
    paths_file.write_text("\n".join(files) + "\n")
    skipped_dir = work / "skipped"
    steps = build_source_pipeline(
        source, config, base, paths_file, root / source.name, eval_index, skipped_dir
    )
    executor = LocalPipelineExecutor(
        pipeline=steps,
        tasks=min(config.tasks, len(files)),
        workers=config.workers,
        logging_dir=str(root / "logs" / source.name),
        skip_completed=False,
    )
    log.info("curating source %r: %d files from %s", source.name, len(files), base)
    start = time.perf_counter()
    try:
        stats = run_tasks(executor)
    except InputError as err:
        raise InputError(f"source {source.name!r}: {err}") from err
    except Exception as err:
        raise RuntimeError(f"curation of source {source.name!r} failed: {err}") from err
    seconds = time.perf_counter() - start
    stages = summarize_stats(stats, [type(step).__name__ for step in steps])
    _list_skipped(stages[0], read_skipped(skipped_dir))
    return {"stages": stages, "documents_out": stages[-1]["kept"], "seconds": round(seconds, 2)}


def summarize_stats(stats: PipelineStats, names: list[str]) -> list[dict]:
    """Turn datatrove's per-step stats into `{"stage", "in", "kept", "removed"}` rows."""
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
        rows.append(row)
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
