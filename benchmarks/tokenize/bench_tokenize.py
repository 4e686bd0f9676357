"""Tokenizer benchmark: bytes/token and fertility per language, books and code, at several
vocabulary sizes for each pre-tokenisation preset; the byte round trip over the whole corpus;
training time and encode throughput next to plain `tokenizers` defaults (ByteLevelBPETokenizer).

    uv run python -m benchmarks.tokenize.bench_tokenize --corpus data/sample
    uv run python -m benchmarks.tokenize.bench_tokenize --corpus path/to/corpus \
        --vocab-sizes 8192 32768 65536

The corpus folder holds web/*.warc.gz, books/*.jsonl.gz and code/*.jsonl.gz (as data/sample
does). Every 5th document of each language and source is held out: statistics are measured on
those, tokenizers train on the rest. Writes results/tokenize-<machine>.{md,csv} and plots.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import tokenizers
from tqdm import tqdm

from benchmarks.tokenize import corpus_text, throughput
from benchmarks.tokenize.results import write_results
from llm_formats.documents import write_documents
from llm_formats.tokenizer import DEFAULT_EOS_TOKEN
from llm_tokenize import Tokenizer, TokenizerConfig, TrainingSource, train_from_config
from llm_tokenize.corpus import stats_sample
from llm_tokenize.report import compare
from llm_tokenize.stats import group_stats

log = logging.getLogger("bench_tokenize")
HERE = Path(__file__).parent
# name -> (pre_tokenizer, max_digits): GPT-2 and GPT-4 as published, the stack's default (GPT-4's
# regex, single digits) and the whitespace-preserving code preset.
PRESETS = {
    "gpt2": ("gpt2", None),
    "gpt4": ("gpt4", 3),
    "gpt4-1digit": ("gpt4", 1),
    "code": ("code", 3),
}
PROPORTIONS = {"web": 0.5, "books": 0.25, "code": 0.25}
# Encode throughput is measured on this much held-out text per language / source.
THROUGHPUT_BYTES_PER_GROUP = 150_000
BASELINE = "tokenizers-default"


def size_name(vocab: int) -> str:
    """8192 -> "8k"; 1000 -> "1000"."""
    return f"{vocab // 1024}k" if vocab % 1024 == 0 else str(vocab)


def split(docs, every: int = 5):
    """(train, held out): every ``every``-th document of each language / source is held out."""
    seen: dict[str, int] = {}
    train, held = [], []
    for doc in docs:
        key = doc.language or doc.source
        seen[key] = seen.get(key, 0) + 1
        (held if seen[key] % every == 1 else train).append(doc)  # the 1st, 6th, ... of each
    return train, held


def write_split(train, cache: Path) -> list[TrainingSource]:
    """Training documents as JSONL per source, sampled by `PROPORTIONS` (a real mixture config)."""
    sources = []
    for name, proportion in PROPORTIONS.items():
        records = [{"id": d.id, "text": d.text, "metadata": {"language": d.language}}
                   for d in train if d.source == name]  # fmt: skip
        path = cache / "train" / f"{name}.jsonl.gz"
        write_documents(path, records)
        sources.append(TrainingSource(name=name, paths=[str(path)], proportion=proportion))
    return sources


def train_all(sources, vocab_sizes, budget: int, out: Path) -> dict[str, dict]:
    """Every preset at every size through `train_from_config`: name -> {path, seconds, card}."""
    trained = {}
    jobs = [(p, v) for v in vocab_sizes for p in PRESETS]
    for preset, vocab in tqdm(jobs, desc="training"):
        pre, digits = PRESETS[preset]
        config = TokenizerConfig(
            vocab_size=vocab,
            pre_tokenizer=pre,
            max_digits=digits,
            sources=sources,
            max_bytes=budget,
            show_progress=False,
        )
        name = f"{preset}-{size_name(vocab)}"
        # The card's statistics on a small sample: the benchmark measures the held-out text.
        _, card = train_from_config(config, out / name, stats_bytes=100_000)
        trained[name] = {"path": out / name / "tokenizer.json", "card": card}
    return trained


def train_baseline(texts: list[str], vocab: int, out: Path) -> tuple[Path, float]:
    """Plain `tokenizers` defaults: ByteLevelBPETokenizer (GPT-2 regex, no normalizer)."""
    tok = tokenizers.ByteLevelBPETokenizer()
    start = time.perf_counter()
    tok.train_from_iterator(texts, vocab_size=vocab, min_frequency=2,
                            special_tokens=[DEFAULT_EOS_TOKEN], show_progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    path = out / BASELINE / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path, seconds


def _round_trip(job: tuple[str, Path, Path]) -> tuple[int, int, list[str]]:
    """(documents, failures, first failed ids) of one tokenizer file over the whole corpus."""
    path, corpus, cache = job
    docs = corpus_text.read_all(corpus, cache, workers=1)  # cached: no extraction
    tok = Tokenizer.from_file(path)
    row = group_stats(tok, [d.text for d in docs], ids=[f"{d.source}/{d.id}" for d in docs])
    return row["docs"], row["round_trip_failures"], row["failed_ids"]


def round_trip_all(paths: dict[str, Path], corpus: Path, cache: Path, workers: int) -> dict:
    """name -> (documents, failures, ids) over every document, train and held out; one process
    per tokenizer, ``workers`` at a time."""
    jobs = [(path, corpus, cache) for path in paths.values()]
    with ProcessPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(_round_trip, jobs), total=len(jobs), desc="round trip"))
    return dict(zip(paths, results, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/sample"))
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[8192, 32768, 65536])
    parser.add_argument("--budget-mb", type=float, default=10.0, help="training text, MB")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    load_before = os.getloadavg()
    start = time.perf_counter()
    docs = corpus_text.read_all(args.corpus, args.cache, args.workers)
    read_s = time.perf_counter() - start
    train, held = split(docs)
    sources = write_split(train, args.cache)
    work = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    trained = train_all(sources, args.vocab_sizes, int(args.budget_mb * 1e6), work)
    mid = args.vocab_sizes[len(args.vocab_sizes) // 2]
    mixture = mixture_texts(trained[f"gpt4-{size_name(mid)}"]["card"], sources)
    base_path, base_s = train_baseline(mixture, mid, work)
    base = f"{BASELINE}-{size_name(mid)}"
    names = {n: t["path"] for n, t in trained.items()} | {base: base_path}
    toks = {n: Tokenizer.from_file(p) for n, p in names.items()}
    rows = []  # statistics of the held-out documents, with their round trip
    for name, tok in tqdm(toks.items(), desc=f"statistics of {len(held)} held-out documents"):
        rows += compare({name: tok}, held)
    at_mid = [f"{p}-{size_name(mid)}" for p in PRESETS] + [base]
    trips = round_trip_all({n: names[n] for n in at_mid}, args.corpus, args.cache, args.workers)
    texts = [d.text for d in stats_sample(held, THROUGHPUT_BYTES_PER_GROUP)]
    speed = {
        name: throughput.measure(toks[name].hf, str(names[name]), texts, args.workers)
        for name in tqdm(at_mid, desc="throughput")
    }
    context = {
        "docs": docs, "held": held, "read_s": read_s, "trained": trained, "base": (base, base_s),
        "trips": trips, "speed": speed, "load": (load_before, os.getloadavg()), "args": args,
    }  # fmt: skip
    write_results(rows, context, [size_name(v) for v in args.vocab_sizes])
    failed = sum(f for _, f, _ in trips.values()) + sum(r["round_trip_failures"] for r in rows)
    log.info("wrote results to %s; %d round-trip failures", args.out, failed)
    return 1 if failed else 0


def mixture_texts(card: dict, sources) -> list[str]:
    """The exact training texts of a trained tokenizer (same sampling), for the baseline."""
    from llm_tokenize.artifacts import select_training_docs
    from llm_tokenize.corpus import load_source

    config = TokenizerConfig(**{**card["settings"], "sources": sources})
    loaded = {s.name: load_source(s) for s in sources}
    docs = {name: d for name, (d, _) in loaded.items()}
    stats = {name: s for name, (_, s) in loaded.items()}
    return select_training_docs(config, docs, stats)


if __name__ == "__main__":
    sys.exit(main())
