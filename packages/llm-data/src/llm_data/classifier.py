"""Train a fastText quality classifier on labelled documents (DCLM-style), with held-out metrics.

Positives and negatives are sources of JSONL documents (`{"id", "text", ...}`, e.g. a curated
folder of books and reference text against one of raw web). Each source is split by document
(seeded; every source holds out its share, so a small source is still in the held-out set);
documents may be cut into examples of `chunk_words` words. fastText is fitted on the training
examples, the held-out examples are scored (the probability of the positive label) and
precision, recall (at 0.5) and ROC AUC are computed from those scores. The model is written
atomically with its card (`llm_data.classifier_card`).
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llm_data.classifier_card import NEGATIVE, POSITIVE, write_card
from llm_data.config import SourceConfig
from llm_data.readers import InputError, resolve_source_files
from llm_formats.documents import read_documents

__all__ = [
    "ClassifierTrainConfig",
    "LabelledSource",
    "fasttext_text",
    "precision_recall",
    "roc_auc",
    "score_texts",
    "train_classifier",
]

log = logging.getLogger(__name__)
_SPACE = re.compile(r"\s+")


@dataclass(kw_only=True)
class LabelledSource:
    """Documents of one label: `name` (for the card) and `path` (a JSONL file, folder or glob)."""

    name: str
    path: str

    def __post_init__(self) -> None:
        SourceConfig(name=self.name, path=self.path, format="jsonl")  # same name/path rules


@dataclass(kw_only=True)
class ClassifierTrainConfig:
    """`llm-data train-classifier`'s settings.

    Attributes:
        positives, negatives: the labelled sources (at least one each).
        output: the model file to write (`.bin`); its card goes beside it.
        heldout_fraction: share of each source's documents held out for the metrics.
        seed: the split, the example order and fastText's seed.
        chunk_words: cut documents into examples of this many words (0: whole documents).
        lr, epoch, dim, word_ngrams, min_count, bucket: fastText's supervised hyperparameters.
        threads: fastText's threads; with 1 the same inputs and seed give the same model
            (more threads train asynchronously, so the model varies).
    """

    positives: list[LabelledSource] = field(default_factory=list)
    negatives: list[LabelledSource] = field(default_factory=list)
    output: str = "quality.bin"
    heldout_fraction: float = 0.2
    seed: int = 0
    chunk_words: int = 0
    lr: float = 0.1
    epoch: int = 5
    dim: int = 32
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 200_000
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("positives", "negatives"):
            if not getattr(self, name):
                raise ValueError(f"{name}=[] is invalid: expected at least one labelled source")
        names = [s.name for s in self.positives + self.negatives]
        if len(set(names)) != len(names):
            raise ValueError(f"sources={names} is invalid: expected unique names")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction={self.heldout_fraction} is invalid: in (0, 1)")
        for name in ("epoch", "dim", "word_ngrams", "min_count", "bucket", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: an integer >= 1")
        if self.chunk_words < 0 or self.lr <= 0:
            raise ValueError("chunk_words must be >= 0 and lr > 0")


def fasttext_text(text: str) -> str:
    """A document as one fastText line: whitespace, newlines included, collapsed to a space.

    fastText splits words on whitespace and reads a newline as an end-of-sentence token, so
    this gives the words datatrove's filter gives it (newlines replaced with spaces)."""
    return _SPACE.sub(" ", text).strip()


def _examples(text: str, chunk_words: int) -> list[str]:
    line = fasttext_text(text)
    if not chunk_words or not line:
        return [line] if line else []
    words = line.split(" ")
    return [" ".join(words[i : i + chunk_words]) for i in range(0, len(words), chunk_words)]


def _split(source: LabelledSource, config: ClassifierTrainConfig) -> tuple[list, list, int]:
    """(train examples, held-out examples, documents) of one source, split by document."""
    base, files = resolve_source_files(
        SourceConfig(name=source.name, path=source.path, format="jsonl")
    )
    docs = [doc.text for f in files for doc in read_documents(Path(base) / f)]
    if len(docs) < 2:
        raise InputError(
            f"source {source.name!r} ({source.path}): {len(docs)} documents, need >= 2"
        )
    order = list(range(len(docs)))
    random.Random(f"{config.seed}:{source.name}").shuffle(order)
    n_held = min(len(docs) - 1, max(1, round(config.heldout_fraction * len(docs))))
    held = set(order[:n_held])
    train, heldout = [], []
    for i, text in enumerate(docs):
        (heldout if i in held else train).extend(_examples(text, config.chunk_words))
    return train, heldout, len(docs)


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """ROC AUC: the probability that a random positive scores above a random negative (ties
    count half), by the Mann-Whitney rank sum with mid-ranks for tied scores."""
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        raise ValueError("AUC needs at least one positive and one negative")
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # mid-rank of the tie group, 1-based
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def precision_recall(
    scores: list[float], labels: list[int], threshold: float = 0.5
) -> tuple[float, float]:
    """Precision and recall of "positive when score >= threshold" (precision 0 if none is)."""
    predicted = [s >= threshold for s in scores]
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    return (tp / sum(predicted) if any(predicted) else 0.0), tp / max(1, sum(labels))


def score_texts(model, texts: list[str]) -> list[float]:
    """P(positive) of each text under a loaded fastText model."""
    scores = []
    for text in texts:
        labels, probs = model.predict(fasttext_text(text), k=-1)
        by_label = dict(zip(labels, probs, strict=True))
        scores.append(min(1.0, float(by_label.get(POSITIVE, 0.0))))  # fastText may give 1.00001
    return scores


def _fit(train_file: Path, config: ClassifierTrainConfig, model_path: Path):
    """Train, save to `model_path`, return the model (the saved file holds the same weights).

    fasttext-community's build: fasttext-numpy2-wheel (0.9.2), and a 0.9.3 built from source,
    diverged to NaN on 0-8 of 8 identical runs on this machine and gave different models for the
    same seed; this build gave one model and no NaN in every run of the same checks.
    """
    import fasttext  # the [classifier] extra

    try:
        model = fasttext.train_supervised(
            input=str(train_file),
            lr=config.lr,
            epoch=config.epoch,
            dim=config.dim,
            wordNgrams=config.word_ngrams,
            minCount=config.min_count,
            bucket=config.bucket,
            thread=config.threads,
            seed=config.seed,
            verbose=0,
        )
    except RuntimeError as err:  # "Encountered NaN." when training diverges
        raise RuntimeError(
            f"fastText training on {len(train_file.read_text().splitlines())} examples failed "
            f"({err}); lower lr ({config.lr}) or epoch ({config.epoch})"
        ) from err
    model.save_model(str(model_path))
    return model


def train_classifier(config: ClassifierTrainConfig) -> dict:
    """Fit, evaluate on the held-out split, write `config.output` and its card.

    Returns:
        The card, plus `model` (the path) and `heldout`: `{"label", "score", "text"}` per
        held-out example (the scores the metrics were computed from).

    Raises:
        InputError: a source path with no JSONL files, or fewer than 2 documents in a source.
    """
    start = time.perf_counter()
    out = Path(config.output).expanduser().resolve()
    train, heldout, sources = [], [], []
    for label, group in ((POSITIVE, config.positives), (NEGATIVE, config.negatives)):
        for source in group:
            tr, ho, n_docs = _split(source, config)
            train += [(label, x) for x in tr]
            heldout += [(label, x) for x in ho]
            sources.append({**asdict(source), "label": label, "documents": n_docs,
                            "train_examples": len(tr), "heldout_examples": len(ho)})  # fmt: skip
    random.Random(config.seed).shuffle(train)  # fastText reads its file in order
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        train_file, tmp_model = Path(tmp) / "train.txt", Path(tmp) / out.name
        train_file.write_text("".join(f"{label} {x}\n" for label, x in train), encoding="utf-8")
        metrics, scored = _evaluate(_fit(train_file, config, tmp_model), heldout)
        tmp_model.replace(out)  # same folder: an atomic rename
    card = {
        "labels": {"positive": POSITIVE, "negative": NEGATIVE},
        "sources": sources,
        "counts": _counts(train, heldout),
        "hyperparameters": {
            k: v for k, v in asdict(config).items() if k not in ("positives", "negatives", "output")
        },  # fmt: skip
        "metrics": metrics,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_card(out, card)
    log.info("classifier %s: held-out %s", out, metrics)
    return {**card, "model": str(out), "heldout": scored}


def _evaluate(model, heldout: list[tuple[str, str]]) -> tuple[dict, list[dict]]:
    """Held-out precision, recall (at 0.5) and AUC from the model's scores."""
    scores = score_texts(model, [x for _, x in heldout])
    labels = [int(label == POSITIVE) for label, _ in heldout]
    precision, recall = precision_recall(scores, labels)
    scored = [{"label": label, "score": score, "text": text}
              for (label, text), score in zip(heldout, scores, strict=True)]  # fmt: skip
    return {
        "heldout_examples": len(labels),
        "precision": precision,
        "recall": recall,
        "auc": roc_auc(scores, labels),
        "threshold": 0.5,
    }, scored


def _counts(train: list, heldout: list) -> dict:
    def by_label(rows: list) -> dict:
        return {"positive": sum(r[0] == POSITIVE for r in rows),
                "negative": sum(r[0] == NEGATIVE for r in rows)}  # fmt: skip

    return {"train": by_label(train), "heldout": by_label(heldout)}
