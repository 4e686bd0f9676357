"""Documents per second per core for each curation stage, next to stock datatrove steps.

Every stage runs in this one process on the same handbook pages: the reader on every record,
Trafilatura on the raw WARC records of `--pages-per-file` pages per file, the filters on the
first `--filter-pages-per-file` extracted pages of every file (labelled with their language
first, as the pipeline does). "per core" is documents
over CPU seconds (this process plus the children that finished, i.e. Trafilatura's sandbox), so
other jobs on a shared machine slow the wall clock more than this number; the wall-clock rate is
in the table too. Stock rows are datatrove's own steps with their defaults (English word
tokenizer for every page; its language filter needs a fastText model download, so none).

    uv run python -m benchmarks.data.stage_throughput [--corpus DIR] [--pages-per-file N]
        [--filter-pages-per-file N]

Writes `results/stage_throughput.{md,json,png}`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata  # noqa: F401  (datatrove 0.9 uses it without importing it)
import json
import resource
import time
from pathlib import Path

from benchmarks.data import _pages


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(step, documents: list) -> dict:
    """Run `step` over copies of `documents`; docs/s on the wall clock and per CPU second."""
    docs = copy.deepcopy(documents)
    cpu, wall = _cpu(), time.perf_counter()
    out = sum(1 for _ in step.run(iter(docs)))
    if hasattr(step, "__exit__"):  # extractors: stop the sandbox so its CPU time is counted
        step.__exit__(None, None, None)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {"docs": len(documents), "kept": out, "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "docs_per_s": len(documents) / wall,
            "docs_per_cpu_s": len(documents) / max(cpu, 1e-9)}  # fmt: skip


def _raw_pages(corpus: Path, per_file: int) -> tuple[list, list[Path]]:
    files = _pages.warc_files(corpus)
    docs = []
    for path in files:
        docs += _pages.read_pages(path)[:per_file]
    return docs, files


def _labelled_pages(files: list[Path], per_file: int) -> list:
    from datatrove.data import Document

    from llm_data.language import LanguageIdFilter

    identifier = LanguageIdFilter()
    docs = []
    for path in files:
        for page in [p for p in _pages.extracted_pages(path) if p["text"].strip()][:per_file]:
            if page["text"].strip():
                doc = Document(text=page["text"], id=page["id"], metadata={"source": "web"})
                identifier.filter(doc)  # the filters dispatch on metadata["language"]
                docs.append(doc)
    return docs


def _warm(step, docs: list) -> None:
    """Load models and per-language tokenizers before timing (one pass over a few pages of
    every language)."""
    seen, sample = set(), []
    for doc in docs:
        if doc.metadata.get("language") not in seen:
            seen.add(doc.metadata.get("language"))
            sample.append(doc)
    for _ in step.run(iter(copy.deepcopy(sample))):
        pass


def stages(corpus: Path, per_file: int, filter_per_file: int) -> list[dict]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import WarcReader
    from tqdm import tqdm

    from llm_data.config import C4Config, FineWebConfig, GopherConfig, PIIConfig
    from llm_data.filters import MultilingualC4Filter, MultilingualFineWebFilter
    from llm_data.language import LanguageIdFilter
    from llm_data.pii import PIIMasker
    from llm_data.quality import MultilingualGopherFilter
    from llm_data.readers import StrictWarcReader

    raw, files = _raw_pages(corpus, per_file)
    labelled = _labelled_pages(files, filter_per_file)
    rows = []

    def reader_rows():
        for name, cls in (("llm-data StrictWarcReader", StrictWarcReader),
                          ("datatrove WarcReader", WarcReader)):  # fmt: skip
            cpu, wall = _cpu(), time.perf_counter()
            n = sum(1 for p in files for _ in cls(str(p.parent), glob_pattern=p.name).run())
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            yield "reader", name, {"docs": n, "kept": n, "wall_s": round(wall, 3),
                                   "cpu_s": round(cpu, 3), "docs_per_s": n / wall,
                                   "docs_per_cpu_s": n / cpu}  # fmt: skip

    ours_trafilatura = Trafilatura(favour_precision=True, timeout=5.0, deduplicate=False)
    plan = [
        ("extraction", "llm-data Trafilatura settings", ours_trafilatura, raw),
        ("extraction", "datatrove Trafilatura defaults", Trafilatura(), raw),
        ("langid", "llm-data LanguageIdFilter (py3langid)", LanguageIdFilter(), labelled),
        ("gopher", "llm-data per language", MultilingualGopherFilter(GopherConfig()), labelled),
        ("gopher", "datatrove GopherQualityFilter (en)", GopherQualityFilter(), labelled),
        ("c4", "llm-data per language", MultilingualC4Filter(C4Config(enabled=True)), labelled),
        ("c4", "datatrove C4QualityFilter (en)", C4QualityFilter(), labelled),
        ("fineweb", "llm-data per language",
         MultilingualFineWebFilter(FineWebConfig(enabled=True)), labelled),
        ("fineweb", "datatrove FineWebQualityFilter (en)", FineWebQualityFilter(), labelled),
        ("pii", "llm-data PIIMasker (email, ip)", PIIMasker(PIIConfig()), labelled),
        ("pii", "llm-data PIIMasker (+ phones)", PIIMasker(PIIConfig(phones=True)), labelled),
        ("pii", "datatrove PIIFormatter (email, ip)", PIIFormatter(), labelled),
    ]  # fmt: skip
    try:  # the exact-dedup step of this checkout, if it still has the in-task filter
        from llm_data.dedup import ExactDedupFilter

        plan.append(("exact dedup", "llm-data ExactDedupFilter", ExactDedupFilter(), labelled))
    except ImportError:
        pass
    for stage, name, result in reader_rows():
        rows.append({"stage": stage, "implementation": name, **result})
    for stage, name, step, docs in tqdm(plan, desc="stages", unit="stage"):
        if stage not in ("extraction", "exact dedup"):
            _warm(step, docs)
        rows.append({"stage": stage, "implementation": name, **_measure(step, docs)})
    return rows


def render(rows: list[dict], corpus: Path, per_file: int, filter_per_file: int) -> str:
    lines = [f"- {k}: {v}" for k, v in _pages.provenance()]
    lines += [
        f"- corpus: {corpus.name}/, 23 languages; reader on every record, extraction on the "
        f"first {per_file} pages of each file, filters on the first {filter_per_file} "
        "non-empty extracted pages of each file",
        "- one process; docs/s per core = documents / CPU seconds (own + finished children)",
        "",
        "| stage | implementation | docs | kept | wall s | docs/s (wall) | docs/s per core |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['implementation']} | {r['docs']} | {r['kept']} | "
            f"{r['wall_s']:.2f} | {r['docs_per_s']:,.0f} | {r['docs_per_cpu_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['stage']}: {r['implementation']}" for r in rows][::-1]
    values = [r["docs_per_cpu_s"] for r in rows][::-1]
    colors = ["tab:blue" if "llm-data" in r["implementation"] else "tab:gray" for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
    ax.barh(labels, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("documents / s per core (log scale); blue: llm-data, gray: stock datatrove")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=_pages.DEFAULT_CORPUS)
    parser.add_argument("--pages-per-file", type=int, default=10)
    parser.add_argument("--filter-pages-per-file", type=int, default=40)
    parser.add_argument("--out", type=Path, default=_pages.RESULTS)
    args = parser.parse_args()
    rows = stages(args.corpus, args.pages_per_file, args.filter_pages_per_file)
    table = render(rows, args.corpus, args.pages_per_file, args.filter_pages_per_file)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    _pages.write_atomic(args.out / "stage_throughput.md", "# Curation stages\n\n" + table)
    _pages.write_atomic(args.out / "stage_throughput.json", json.dumps(rows, indent=1) + "\n")
    date, machine, load = (v for _, v in _pages.provenance())
    plot(rows, args.out / "stage_throughput.png", f"{date}, {machine}, load {load}")


if __name__ == "__main__":
    main()
