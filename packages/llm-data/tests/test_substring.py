"""Substring dedup: Lee et al.'s planted sentence, cut from every copy but one, across tasks."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from llm_data import CurationConfig, DedupConfig, SourceConfig, run_curation
from llm_data.config import PIIConfig
from llm_data.inspect import inspect_curated
from llm_data.minhash import word_tokenizer_for
from llm_data.substring import _join, sentence_spans

N_DOCS = 1000
MIN_WORDS = 50
# Lengths around the threshold, each planted (as one sentence) in 3 documents: the step of
# the "S-curve" (a span is cut from 2 of its 3 copies when it has MIN_WORDS words or more).
STEP_LENGTHS = (30, 48, 49, 50, 51, 60)
COPIES = 3
# Repeated in every document but short: never cut (precision).
SHORT = "Thank you for reading this page."


def _sentence(rng: random.Random, vocabulary: list[str], n: int) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(n)).capitalize() + "."


def _corpus(seed: int = 0):
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ve", "ri", "do", "pa", "gu", "zo"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(5000)})
    planted = _sentence(rng, vocabulary, 61)
    step = {n: _sentence(rng, vocabulary, n) for n in STEP_LENGTHS}
    docs = []
    for i in range(N_DOCS):
        own = [_sentence(rng, vocabulary, rng.randint(6, 12)) for _ in range(rng.randint(3, 4))]
        extra = [step[n] for k, n in enumerate(STEP_LENGTHS) if i // COPIES == k]
        # Repeated sentences are never next to each other: a run of them is cut as one span.
        sentences = [own[0], planted, own[1], *extra, own[2], SHORT, *own[3:]]
        if rng.random() < 0.5:
            sentences[:2] = [planted, own[0]]
        docs.append({"id": f"doc{i:04d}", "text": " ".join(sentences), "own": own})
    return docs, planted, step


@pytest.fixture(scope="module")
def deduped(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("substring")
    docs, planted, step = _corpus()
    (root / "in").mkdir()
    for part in range(2):  # two files: two tasks, the copies spread over both
        with open(root / "in" / f"part{part}.jsonl", "w") as f:
            for d in docs[part::2]:
                f.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
    source = SourceConfig(name="s", path=str(root / "in"), format="jsonl", quality_filters=False)
    config = CurationConfig(
        sources=[source],
        output_dir=str(root / "out"),
        pii=PIIConfig(enabled=False),
        dedup=DedupConfig(exact=False, url=False, minhash=False, substring=True,
                          substring_min_words=MIN_WORDS, partitions=2),
        tasks=2,
    )  # fmt: skip
    stats = run_curation(config)
    out = {}
    for path in sorted((root / "out" / "s").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            out.update((r["id"], r) for r in map(json.loads, f))
    cuts = []
    for path in sorted((root / "out" / "excluded" / "substring" / "cuts").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            cuts += map(json.loads, f)
    return {"docs": docs, "planted": planted, "step": step, "out": out, "cuts": cuts,
            "stats": stats, "root": root / "out"}  # fmt: skip


def _kept_copy(docs: list[dict], sentence: str) -> str:
    """The id of the document KEEP_RULE keeps `sentence` in: the longest, then smallest id."""
    return min(
        (d for d in docs if sentence in d["text"]), key=lambda d: (-len(d["text"]), d["id"])
    )["id"]


def test_planted_sentence_survives_in_exactly_one_document(deduped):
    docs, out, planted = deduped["docs"], deduped["out"], deduped["planted"]
    assert len(out) == N_DOCS  # documents are kept
    holders = [i for i, r in out.items() if planted in r["text"]]
    assert holders == [_kept_copy(docs, planted)]
    # Recall 999/999 copies cut; precision: every document keeps its own text, whole, and
    # loses nothing but the copies of repeated spans of MIN_WORDS words or more.
    long_spans = [planted] + [t for n, t in deduped["step"].items() if n >= MIN_WORDS]
    kept = {span: _kept_copy(docs, span) for span in long_spans}
    for d in docs:
        text = out[d["id"]]["text"]
        assert all(s in text for s in d["own"]) and SHORT in text, d["id"]
        expected = d["text"]
        for span in long_spans:
            if span in expected and kept[span] != d["id"]:
                expected = expected.replace(span, "")
        assert text.split() == expected.split(), d["id"]


def test_cut_records_name_the_kept_copy(deduped):
    cuts, planted = deduped["cuts"], deduped["planted"]
    planted_cuts = [c for r in cuts for c in r["cuts"] if c["words"] == 61]
    assert len(planted_cuts) == N_DOCS - 1
    kept = {c["duplicate_of"] for c in planted_cuts}
    assert kept == {next(i for i, r in deduped["out"].items() if planted in r["text"])}
    assert all(c["text_prefix"] == planted[:200] for c in planted_cuts)
    row = deduped["stats"]["s"]["stages"][-1]
    assert row["stage"] == "SubstringDedup" and row["removed"] == 0
    assert row["counted"]["documents_cut"] == len(cuts)
    long_enough = sum(n >= MIN_WORDS for n in STEP_LENGTHS)
    assert row["counted"]["spans_cut"] == N_DOCS - 1 + long_enough * (COPIES - 1)
    # `llm-data inspect` counts removed documents: the cut records are none.
    assert inspect_curated(deduped["root"], examples=0)["removed"]["substring"]["documents"] == 0


@pytest.mark.parametrize("length", STEP_LENGTHS)
def test_threshold_is_a_step_at_min_words(deduped, length):
    sentence = deduped["step"][length]
    holders = sum(sentence in r["text"] for r in deduped["out"].values())
    assert holders == (1 if length >= MIN_WORDS else COPIES)


def test_sentences_split_at_newlines_and_seams_keep_one_break():
    tokenizer = word_tokenizer_for("en")
    text = "Menu\nHome page\n\nA sentence here. Another one.\n\n\n  \n"
    assert [(text[a:b], w) for a, b, w in sentence_spans(text, tokenizer)] == [
        ("Menu", 1), ("Home page", 2), ("A sentence here.", 3), ("Another one.", 2)
    ]  # fmt: skip
    assert _join(["First paragraph.\n\n", "\n\nThird paragraph."]) == (
        "First paragraph.\n\nThird paragraph."
    )
    assert _join(["Before. ", " After."]) == "Before. After."
    with pytest.raises(ValueError, match="dedup.substring_min_words"):
        DedupConfig(substring_min_words=0)
