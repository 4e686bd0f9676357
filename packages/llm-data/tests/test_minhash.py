"""MinHash recall and precision against LSH's S-curve, and the per-language word tokenizers."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
)

from llm_data.minhash import (
    ChooseClusterKeepers,
    MinhashExclusionWriter,
    MultilingualMinhashSignature,
    lsh_probability,
    word_tokenizer_for,
)

BANDS, ROWS, NGRAM = 14, 8, 5  # DedupConfig's defaults
SIMILARITIES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
PAIRS_PER_BAND = 50
WORDS = 100


def _planted_pairs(rng: np.random.Generator) -> list[tuple[str, str, float]]:
    """(original, near copy, target Jaccard) per pair: the copy keeps the original's first k
    words and replaces the rest, so that (k - 4) / (2 (W - 4) - (k - 4)) word 5-grams match."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    # 3,000 random 7-letter words: 5-grams (3000^5 of them) never repeat by chance, and a
    # small vocabulary keeps spaCy's lexeme cache warm.
    vocabulary = np.array(["".join(w) for w in rng.choice(letters, size=(3000, 7))])

    def words(n: int) -> list[str]:
        return list(rng.choice(vocabulary, size=n))

    pairs = []
    shingles = WORDS - NGRAM + 1
    for s in SIMILARITIES:
        shared = round(2 * s * shingles / (1 + s))
        for _ in range(PAIRS_PER_BAND):
            original = words(WORDS)
            copy = original[: shared + NGRAM - 1] + words(WORDS - shared - NGRAM + 1)
            pairs.append((" ".join(original), " ".join(copy), s))
    return pairs


class _KeepShingles(MultilingualMinhashSignature):
    """Also keeps each text's shingles, to measure the pairs' true similarity."""

    shingles: dict[str, set[int]] = {}

    def get_shingles(self, text: str) -> np.ndarray:
        shingles = super().get_shingles(text)
        self.shingles[text] = set(shingles.ravel().tolist())
        return shingles


def _run_minhash(docs: list[Document], tmp_path, config: MinhashConfig) -> tuple[set, dict]:
    """datatrove's four MinHash stages (plus keeper choice) in this process, one task each."""
    sigs, buckets, clusters = (str(tmp_path / d) for d in ("sigs", "buckets", "clusters"))
    signature = _KeepShingles(sigs, config, {"planted": 0})
    signature.run(iter(docs))
    for bucket in range(config.num_buckets):
        MinhashDedupBuckets(sigs, buckets, config=config).run(rank=bucket, world_size=BANDS)
    MinhashDedupCluster(buckets, clusters, config=config, save_cluster_id=True).run()
    ChooseClusterKeepers(sigs, clusters).run()
    writer = MinhashExclusionWriter(str(tmp_path / "excluded"), clusters)
    step = MinhashDedupFilter(clusters, exclusion_writer=writer, load_cluster_ids=True)
    fresh = [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in docs]
    kept = {d.id for d in step.run(iter(fresh))}
    with gzip.open(tmp_path / "excluded" / "00000.jsonl.gz", "rt") as f:
        excluded = {r["id"]: r for r in map(json.loads, f)}
    return kept, excluded


def test_recall_and_precision_follow_the_s_curve(tmp_path):
    rng = np.random.default_rng(0)
    pairs = _planted_pairs(rng)
    docs = []
    for i, (original, copy, _) in enumerate(pairs):
        docs.append(Document(text=original, id=f"{i}-orig", metadata={"source": "planted"}))
        docs.append(Document(text=copy, id=f"{i}-copy", metadata={"source": "planted"}))
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=1)
    kept, excluded = _run_minhash(docs, tmp_path, config)

    # The similarity each pair really has, on the shingles MinHash hashed (its tokenizer).
    jaccard = []
    for original, copy, _ in pairs:
        a, b = _KeepShingles.shingles[original], _KeepShingles.shingles[copy]
        jaccard.append(len(a & b) / len(a | b))

    rows = []
    true_removals = 0
    for band, s in enumerate(SIMILARITIES):
        idx = range(band * PAIRS_PER_BAND, (band + 1) * PAIRS_PER_BAND)
        found = [f"{i}-orig" not in kept or f"{i}-copy" not in kept for i in idx]
        expected = [lsh_probability(jaccard[i], BANDS, ROWS) for i in idx]
        recall, p = np.mean(found), np.mean(expected)
        # Detections are independent Bernoulli trials: 3 standard deviations of their mean,
        # and at least one pair of slack where the curve is ~0 or ~1 (no variance).
        tolerance = max(3 * math.sqrt(sum(q * (1 - q) for q in expected)), 1) / len(expected)
        rows.append((s, np.mean([jaccard[i] for i in idx]), recall, p, tolerance))
        assert abs(recall - p) <= tolerance, rows[-1]
        for i in idx:
            pair = {f"{i}-orig", f"{i}-copy"}
            for doc_id in pair & set(excluded):
                assert excluded[doc_id]["duplicate_of"] in pair  # its own partner, no other
                true_removals += 1
    precision = true_removals / len(excluded)
    print("\nsimilarity | measured J | recall | 1-(1-s^r)^b | tolerance")
    for row in rows:
        print(" | ".join(f"{x:.3f}" for x in row))
    print(f"precision {precision:.3f} over {len(excluded)} removals")
    assert precision == 1.0
    assert len(kept) + len(excluded) == len(docs)


def test_per_language_word_tokenizers():
    zh = word_tokenizer_for("zh").word_tokenize("我们喜欢自然语言处理和机器学习")
    assert 4 <= len(zh) <= 10  # jieba words, not one token per sentence or per character
    assert len(word_tokenizer_for("ja").word_tokenize("私は自然言語処理が好きです")) >= 4
    assert word_tokenizer_for("de").word_tokenize("Das ist ein Haus.")[:4] == [
        "Das",
        "ist",
        "ein",
        "Haus",
    ]
    assert word_tokenizer_for("xx-unknown") is None
    try:  # datatrove's Korean tokenizer needs kiwipiepy, which llm-data does not install
        import kiwipiepy  # noqa: F401
    except ImportError:
        assert word_tokenizer_for("ko") is None


def test_signature_uses_the_document_language(tmp_path):
    config = MinhashConfig(n_grams=2, num_buckets=2, hashes_per_bucket=2)
    step = MultilingualMinhashSignature(str(tmp_path), config, {})
    text = "我们喜欢自然语言处理和机器学习。我们喜欢自然语言处理和机器学习。"
    seen = {}

    def record(data):
        for doc in data:
            yield doc
            seen[doc.id] = len(step.get_shingles(doc.text))

    docs = [
        Document(text=text, id="zh", metadata={"language": "zh"}),
        Document(text=text, id="en", metadata={"language": "en"}),
        Document(text=text, id="none", metadata={"language": "zz"}),
    ]
    list(step._per_document(record(iter(docs)), _NullSink()))
    assert seen["zh"] > 5 * seen["en"]  # jieba's words vs spaCy English's whole sentences
    assert seen["none"] == seen["en"]  # no tokenizer for "zz": the English one
    assert step.stats["tokenizer_fallback_zz"].total == 1


class _NullSink:
    def write(self, _: bytes) -> None:
        pass


@pytest.mark.parametrize(("s", "p"), [(0.5, 0.0533), (0.8, 0.9235), (0.9, 0.9996)])
def test_lsh_probability(s, p):
    assert lsh_probability(s, BANDS, ROWS) == pytest.approx(p, abs=1e-4)
