"""The trained quality classifier as curation steps: score every document, keep by threshold or
by top fraction per source.

`QualityClassifierFilter` scores whole documents as datatrove's `FastTextClassifierFilter` does
(newlines as spaces, the probability of one label), but is not that class: datatrove's demands
the fasttext-numpy2-wheel distribution (whose training diverges here, see
`llm_data.classifier`), loads a URL or path without a hash check, stores every label's score
under its label name and gives no drop reason. Here the model is loaded through the card check
(`llm_data.classifier_card.load_classifier`), the score goes to `metadata["quality_score"]`, and
a drop says why. With `threshold` it drops in place. With
`top_fraction` the cut depends on every score of the source, so the source runs as three stages
(each on any executor; no task holds more than one task's documents):

    <source> [T]: ... -> score (keeps all; each task writes a histogram of its scores) -> write
    _quality/<source>/cutoff [1]: sum the T histograms, write the cut bin to cutoff.json
    _quality/<source>/cut [T]: read the scored documents, drop those below the cut bin

The histogram has `BINS` bins over [0, 1]: the cut keeps at least `top_fraction` of the
documents, and more only by the ties inside the cut bin (scores within 1 / BINS of the cutoff).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.pipeline.writers.disk_base import DiskWriter

from llm_data.classifier import score_texts
from llm_data.classifier_card import load_classifier, verify_model
from llm_data.config import ClassifierConfig
from llm_data.executors import Stage
from llm_formats.atomic import atomic_write_bytes, atomic_write_json

__all__ = [
    "BINS",
    "QualityClassifierFilter",
    "QualityCut",
    "QualityCutoff",
    "SCORE_KEY",
    "cut_bin",
    "cut_stage_name",
    "quality_cut_stages",
]

SCORE_KEY = "quality_score"
BINS = 1 << 16
CUTOFF_FILE = "cutoff.json"


def score_bin(score: float) -> int:
    return min(max(int(score * BINS), 0), BINS - 1)


class QualityClassifierFilter(BaseFilter):
    """Score each document (P(positive) under the card-checked fastText model) into
    `metadata["quality_score"]`; with a threshold, drop documents below it
    (`quality_below_threshold`); without, keep all and write this task's score histogram to
    `histogram_dir/<rank>.npy` (for `QualityCutoff`)."""

    name = "🎯 Quality classifier"
    _requires_dependencies = [("fasttext", "fasttext-community")]  # the [classifier] extra

    def __init__(
        self,
        config: ClassifierConfig,
        histogram_dir: Path | None = None,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        verify_model(config.model)  # a tampered or missing model fails before any task starts
        self.model_path, self.threshold = config.model, config.threshold
        self.histogram_dir = histogram_dir
        self._model = self._histogram = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._model is None:
            self._model = load_classifier(self.model_path)
        (score,) = score_texts(self._model, [doc.text])
        doc.metadata[SCORE_KEY] = score
        if self._histogram is not None:
            self._histogram[score_bin(score)] += 1
        if self.threshold is None or score >= self.threshold:
            return True
        return False, "quality_below_threshold"

    def run(self, data, rank: int = 0, world_size: int = 1):
        if self.histogram_dir is not None:
            self._histogram = np.zeros(BINS, dtype=np.int64)
        yield from super().run(data, rank, world_size)
        if self.histogram_dir is not None:
            _save_histogram(Path(self.histogram_dir) / f"{rank:05d}.npy", self._histogram)


def _save_histogram(path: Path, histogram: np.ndarray) -> None:
    """Only the non-empty bins, as a (2, K) array of bin indices and counts."""
    nonzero = np.flatnonzero(histogram)
    buffer = io.BytesIO()
    np.save(buffer, np.stack([nonzero, histogram[nonzero]]))
    atomic_write_bytes(path, buffer.getvalue())


def cut_bin(histogram: np.ndarray, top_fraction: float) -> tuple[int, int, int]:
    """(cut bin, documents, documents kept): the highest bin such that the documents in it and
    above are at least `ceil(top_fraction x documents)`."""
    total = int(histogram.sum())
    if total == 0:
        return 0, 0, 0
    target = math.ceil(top_fraction * total)
    from_top = np.cumsum(histogram[::-1])
    index = int(np.searchsorted(from_top, target))  # first position with from_top >= target
    return BINS - 1 - index, total, int(from_top[index])


class QualityCutoff(PipelineStep):
    """One task: sum a source's per-task histograms, write the cut bin to `cutoff.json`."""

    name = "🎯 Quality cutoff"

    def __init__(self, histogram_dir: Path, tasks: int, top_fraction: float):
        super().__init__()
        self.histogram_dir, self.tasks, self.top_fraction = histogram_dir, tasks, top_fraction

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        files = sorted(Path(self.histogram_dir).glob("*.npy"))
        if len(files) != self.tasks:
            raise RuntimeError(
                f"{self.histogram_dir}: {len(files)} score histograms, expected one per task "
                f"({self.tasks})"
            )
        histogram = np.zeros(BINS, dtype=np.int64)
        for path in files:
            bins, counts = np.load(path)
            histogram[bins] += counts
        cut, total, kept = cut_bin(histogram, self.top_fraction)
        atomic_write_json(
            Path(self.histogram_dir) / CUTOFF_FILE,
            {"bin": cut, "score": cut / BINS, "documents": total, "kept": kept,
             "top_fraction": self.top_fraction, "bins": BINS},
        )  # fmt: skip
        yield from ()


class QualityCut(BaseFilter):
    """Drop scored documents below the source's cut bin (`quality_below_top_fraction`)."""

    name = "🎯 Quality top fraction"

    def __init__(self, histogram_dir: Path, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.histogram_dir = histogram_dir
        self._cut = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._cut is None:
            cutoff = json.loads((Path(self.histogram_dir) / CUTOFF_FILE).read_text())
            self._cut = int(cutoff["bin"])
        if score_bin(doc.metadata[SCORE_KEY]) >= self._cut:
            return True
        return False, "quality_below_top_fraction"


QUALITY_LOGS = "_quality"  # logs/_quality/<source>/{cutoff,cut}/ (source names cannot start "_")


def cut_stage_name(source: str) -> str:
    return f"{QUALITY_LOGS}/{source}/cut"


def quality_cut_stages(
    source: str, tasks: int, top_fraction: float, scored: Path, histograms: Path, out: Path,
    excluded_dir: Path, after: str,
) -> list[Stage]:  # fmt: skip
    """The cutoff [1] and cut [tasks] stages of a source cut to its top fraction (module doc).

    Args:
        source: the source's name.
        tasks: tasks of the source's stage (one histogram each) and of the cut.
        top_fraction: the share of the source's documents to keep.
        scored: the scored documents (the source stage's output); histograms: their histograms.
        out: where the cut writes what it keeps (`<rank>.jsonl.gz`, the input of dedup).
        excluded_dir: `excluded/`; dropped documents go to `classifier/<source>/`.
        after: the source stage's name.
    """
    cutoff = Stage(
        f"{QUALITY_LOGS}/{source}/cutoff",
        [QualityCutoff(histograms, tasks, top_fraction)],
        1,
        (after,),
    )
    writer = JsonlWriter(
        str(excluded_dir / "classifier"), output_filename="${source}/${rank}.jsonl.gz"
    )
    cut = Stage(
        cut_stage_name(source),
        [
            JsonlReader(str(scored), glob_pattern="*.jsonl.gz"),
            QualityCut(histograms, writer),
            JsonlWriter(str(out), output_filename="${rank}.jsonl.gz"),
        ],
        tasks,
        (cutoff.name,),
    )
    return [cutoff, cut]
