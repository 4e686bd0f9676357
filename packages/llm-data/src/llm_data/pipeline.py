"""The filtering pipeline of one source, as a list of datatrove steps (dedup runs after it,
over every source at once: `llm_data.dedup_stages`)."""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.writers import JsonlWriter

from llm_data.config import CurationConfig, SourceConfig
from llm_data.decontamination import DecontaminationFilter, EvalIndex
from llm_data.filters import quality_steps
from llm_data.readers import make_reader

__all__ = ["build_source_pipeline"]

# Seconds per page before Trafilatura gives up (datatrove's default of 1 s is tight on a busy core).
_EXTRACT_TIMEOUT_S = 5.0


def build_source_pipeline(
    source: SourceConfig,
    config: CurationConfig,
    base_dir: Path,
    paths_file: Path,
    out_dir: Path,
    eval_index: EvalIndex | None = None,
    skipped_dir: Path | None = None,
    excluded_dir: Path | None = None,
    histogram_dir: Path | None = None,
) -> list[PipelineStep]:
    """Steps for one source: read -> [extract] -> [language ID -> Gopher -> Gopher repetition
    -> C4 -> FineWeb] -> PII masking -> [decontamination] -> write.

    Args:
        source: the source to curate.
        config: the run's configuration (filters and thresholds).
        base_dir: folder the paths in `paths_file` are relative to.
        paths_file: one input file per line.
        out_dir: folder for this source's filtered JSONL (the input of dedup).
        eval_index: eval n-grams to decontaminate against (None: no decontamination).
        skipped_dir: where the JSONL reader records the lines it skipped (file, line, reason).
        excluded_dir: where the quality filters write what they drop, as
            `<excluded_dir>/<filter>/<source>/` (default: `out_dir/../excluded`).
        histogram_dir: the quality classifier's score histograms (top fraction only).
    """
    metadata = {"source": source.name}
    steps: list[PipelineStep] = [make_reader(source, base_dir, paths_file, metadata, skipped_dir)]
    if source.format == "warc":
        # deduplicate=False: Trafilatura's own dedup is an LRU cache of paragraphs per process,
        # so what it cut depended on document order and on how files were split into tasks
        # (1 task: 32 sample pages emptied; 2 tasks: none). Dedup is the dedup steps' job.
        extractor = Trafilatura(
            favour_precision=True, timeout=_EXTRACT_TIMEOUT_S, deduplicate=False
        )
        steps.append(extractor)
    # language ID, Gopher, Gopher repetition, C4, FineWeb, PII masking (llm_data.filters)
    excluded_dir = excluded_dir or out_dir.parent / "excluded"
    steps += quality_steps(source, config, excluded_dir, histogram_dir)
    if eval_index is not None:
        steps.append(DecontaminationFilter(eval_index))
    steps.append(JsonlWriter(str(out_dir), output_filename="${rank}.jsonl.gz"))
    return steps
