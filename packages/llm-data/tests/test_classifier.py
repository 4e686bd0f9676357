"""The trained quality classifier: training, held-out metrics, the card, the filter steps.

The labelled set is cut from the sample corpus: 80-word pieces of Shakespeare (positives) and of
Python standard-library modules (negatives), 40 of each, so fastText fits in well under a second.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest

pytest.importorskip("fasttext", reason="needs the [classifier] extra")

from datatrove.data import Document  # noqa: E402

from llm_data import CurationConfig, SourceConfig, run_curation  # noqa: E402
from llm_data.classifier import (  # noqa: E402
    ClassifierTrainConfig,
    LabelledSource,
    roc_auc,
    train_classifier,
)
from llm_data.classifier_card import ClassifierError, load_classifier, read_card  # noqa: E402
from llm_data.classifier_filter import BINS, QualityClassifierFilter  # noqa: E402
from llm_data.cli import main  # noqa: E402
from llm_data.config import ClassifierConfig, DedupConfig, GopherConfig, PIIConfig  # noqa: E402

SAMPLE = Path(__file__).parents[3] / "data" / "sample"
PIECES, WORDS = 40, 80
SMALL = {"bucket": 10_000, "dim": 16, "epoch": 5}  # a small model file (~0.7 MB)


def _pieces(name: str) -> list[str]:
    with gzip.open(next(SAMPLE.glob(f"*/{name}.jsonl.gz")), "rt") as f:
        words = [
            w
            for _, line in zip(range(4), f, strict=False)
            for w in json.loads(line)["text"].split()
        ]
    return [" ".join(words[i * WORDS : (i + 1) * WORDS]) for i in range(PIECES)]


def _write(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"{path.stem}-{i}", "text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("labelled")
    books, code = _pieces("shakespeare"), _pieces("python-stdlib")
    return {
        "root": root,
        "books": books,
        "code": code,
        "pos": _write(root / "pos" / "books.jsonl", books),
        "neg": _write(root / "neg" / "code.jsonl", code),
    }


def _train(labelled: dict, out: Path, pos: Path | None = None, neg: Path | None = None) -> dict:
    config = ClassifierTrainConfig(
        positives=[LabelledSource(name="books", path=str(pos or labelled["pos"]))],
        negatives=[LabelledSource(name="code", path=str(neg or labelled["neg"]))],
        output=str(out),
        **SMALL,
    )
    return train_classifier(config)


@pytest.fixture(scope="module")
def trained(labelled) -> dict:
    return _train(labelled, labelled["root"] / "model" / "quality.bin")


def test_auc_counts_pairs_and_ties():
    # pairs (pos, neg): 0.4>0.1, 0.4=0.4 (half), 0.8>0.1, 0.8>0.4 -> 3.5 of 4
    assert roc_auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == 0.875
    assert roc_auc([0.9, 0.1], [0, 1]) == 0.0


@pytest.mark.trains
def test_heldout_metrics_are_those_of_the_saved_models_scores(trained):
    heldout = trained["heldout"]
    pos = [r["score"] for r in heldout if r["label"] == "__label__positive"]
    neg = [r["score"] for r in heldout if r["label"] == "__label__negative"]
    # every source holds out round(0.2 x 40) = 8 documents (one example each: no chunking)
    assert len(pos) == len(neg) == 8 == trained["counts"]["heldout"]["positive"]
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    metrics = trained["metrics"]
    assert metrics["auc"] == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
    tp = sum(s >= 0.5 for s in pos)
    assert metrics["recall"] == tp / len(pos)
    predicted = tp + sum(s >= 0.5 for s in neg)
    assert metrics["precision"] == (tp / predicted if predicted else 0.0)
    # the file on disk gives the same scores (what a curation filter will load)
    model = load_classifier(trained["model"])
    for row in heldout:
        labels, probs = model.predict(row["text"], k=-1)
        assert min(1.0, dict(zip(labels, probs, strict=True))["__label__positive"]) == (
            pytest.approx(row["score"], abs=1e-6)
        )


@pytest.mark.trains
def test_the_classifier_beats_the_same_training_on_shuffled_labels(labelled, trained):
    """Not a tuned constant: the same data, settings and split with the labels shuffled."""
    texts = labelled["books"] + labelled["code"]
    random.Random(1).shuffle(texts)
    root = labelled["root"] / "shuffled"
    pos = _write(root / "pos" / "a.jsonl", texts[:PIECES])
    neg = _write(root / "neg" / "b.jsonl", texts[PIECES:])
    shuffled = _train(labelled, root / "model.bin", pos, neg)
    assert trained["metrics"]["auc"] > shuffled["metrics"]["auc"]


def test_the_card_describes_the_model(trained):
    card = read_card(trained["model"])
    assert card["model_file"] == "quality.bin"
    assert card["counts"]["train"] == {"positive": 32, "negative": 32}
    assert [s["documents"] for s in card["sources"]] == [PIECES, PIECES]
    assert card["hyperparameters"]["bucket"] == 10_000
    assert card["metrics"] == trained["metrics"]
    assert not list(Path(trained["model"]).parent.glob(".*"))  # no temp files left


def test_a_tampered_model_is_refused_naming_the_file(trained, tmp_path):
    model = tmp_path / "quality.bin"
    data = bytearray(Path(trained["model"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    card = Path(trained["model"]).with_name("quality.card.json")
    (tmp_path / card.name).write_text(card.read_text())
    with pytest.raises(ClassifierError, match=r"quality\.bin: sha256"):
        load_classifier(model)
    with pytest.raises(ClassifierError, match="quality.bin: sha256"):
        QualityClassifierFilter(ClassifierConfig(enabled=True, model=str(model), threshold=0.5))
    (tmp_path / card.name).write_text(json.dumps({"version": 1}))
    with pytest.raises(ClassifierError, match="field 'model_file' missing"):
        load_classifier(model)


def test_the_filter_scores_into_metadata_and_keeps_by_threshold(labelled, trained):
    config = ClassifierConfig(enabled=True, model=trained["model"], threshold=0.5)
    step = QualityClassifierFilter(config)
    docs = [Document(text=t, id=f"b{i}") for i, t in enumerate(labelled["books"][:5])]
    docs += [Document(text=t, id=f"c{i}") for i, t in enumerate(labelled["code"][:5])]
    kept = list(step.run(iter(docs)))
    scores = {d.id: d.metadata["quality_score"] for d in docs}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert {d.id for d in kept} == {i for i, s in scores.items() if s >= 0.5}
    dropped = len(docs) - len(kept)
    assert step.stats["dropped_quality_below_threshold"].total == dropped
    assert all("__label__positive" not in d.metadata for d in docs)


@pytest.mark.trains
def test_curation_keeps_the_top_fraction_of_each_source(labelled, trained, tmp_path, helpers):
    """Two tasks per source, so the cutoff comes from merged histograms."""
    texts = labelled["books"][:12] + labelled["code"][:12]
    random.Random(0).shuffle(texts)
    inputs = tmp_path / "in"
    _write(inputs / "a.jsonl", texts[:12])
    _write(inputs / "b.jsonl", texts[12:])
    out = tmp_path / "curated"
    fraction = 0.25
    config = CurationConfig(
        sources=[SourceConfig(name="mixed", path=str(inputs), format="jsonl")],
        output_dir=str(out),
        languages=(),
        min_language_score=0.0,  # keep every document up to the classifier
        gopher=GopherConfig(enabled=False),
        classifier=ClassifierConfig(enabled=True, model=trained["model"], top_fraction=fraction),
        pii=PIIConfig(enabled=False),
        dedup=DedupConfig(exact=False, url=False, minhash=False),
        tasks=2,
    )
    stats = run_curation(config)["mixed"]
    kept = helpers.read_curated(out / "mixed")
    removed = helpers.read_curated(out / "excluded" / "classifier" / "mixed")
    assert len(kept) + len(removed) == len(texts)
    kept_scores = [d["metadata"]["quality_score"] for d in kept]
    removed_scores = [d["metadata"]["quality_score"] for d in removed]
    assert min(kept_scores) >= max(removed_scores)
    target = math.ceil(fraction * len(texts))
    assert len(kept) >= target
    # more than the target only by ties in the cut bin
    cut = int(min(kept_scores) * BINS)
    assert len(kept) - target <= sum(int(s * BINS) == cut for s in kept_scores)
    rows = {row["stage"]: row for row in stats["stages"]}
    assert rows["QualityClassifierFilter"]["kept"] == len(texts)
    assert rows["QualityCut"] == {
        "stage": "QualityCut",
        "in": len(texts),
        "kept": len(kept),
        "removed": len(removed),
        **({"removed_by": {"quality_below_top_fraction": len(removed)}} if removed else {}),
    }
    assert stats["documents_out"] == len(kept)


def test_the_cli_trains_and_writes_the_card(labelled, tmp_path, capsys):
    out = tmp_path / "m.bin"
    argv = ["train-classifier", "--positive", f"books={labelled['pos']}",
            "--negative", f"code={labelled['neg']}", "--out", str(out),
            "--bucket", "10000", "--dim", "16"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == read_card(out)["metrics"]
    missing = tmp_path / "nothing-here"
    assert main([*argv[:2], f"books={missing}", *argv[3:]]) == 2
    assert str(missing) in capsys.readouterr().err


def test_the_filter_config_needs_a_model_and_one_rule():
    ClassifierConfig()  # off: nothing to check
    with pytest.raises(ValueError, match="classifier.model"):
        ClassifierConfig(enabled=True, threshold=0.5)
    for rules in ({}, {"threshold": 0.5, "top_fraction": 0.5}):
        with pytest.raises(ValueError, match="exactly one of threshold, top_fraction"):
            ClassifierConfig(enabled=True, model="m.bin", **rules)
    with pytest.raises(ValueError, match="classifier.top_fraction=0"):
        ClassifierConfig(enabled=True, model="m.bin", top_fraction=0)
