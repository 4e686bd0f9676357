"""Summarize a curated folder: documents, languages, words per source, and what was removed.

Reads what `run_curation` leaves: `curation_stats.json` (per-stage counts and reasons),
`<source>/*.jsonl.gz` (the kept documents) and `excluded/<step>/**.jsonl.gz` (the removed
documents, with datatrove's `metadata["filter_reason"]`).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

from llm_data.substring import CUTS_DIR
from llm_formats.documents import NOT_SOURCES, read_documents
from llm_formats.jsonl import read_jsonl

__all__ = ["inspect_curated", "render_report"]

STATS_FILE = "curation_stats.json"  # written by llm_data.curation
_PREVIEW_CHARS = 160


def _records(path: Path):
    """The raw records of an excluded-documents file (filters' Documents, dedup's records)."""
    for record, _ in read_jsonl(path):
        yield record


def _source_summary(files: list[Path], progress, tokenizer=None) -> dict:
    languages: collections.Counter = collections.Counter()
    pii: collections.Counter = collections.Counter()
    unfiltered: collections.Counter = collections.Counter()
    docs = words = chars = tokens = 0
    for path in files:
        batch = []
        for doc in read_documents(path):
            meta = doc.metadata
            docs += 1
            words += len(doc.text.split())
            chars += len(doc.text)
            languages[meta.get("language", "-")] += 1
            pii.update(meta.get("pii", {}))
            unfiltered.update(meta.get("unfiltered", []))
            batch.append(doc.text)
        if tokenizer is not None and batch:
            tokens += sum(len(ids) for ids in tokenizer.encode_batch(batch))
        progress.update(1)
    return {
        "documents": docs,
        "words": words,  # whitespace-separated: CJK text counts few, see characters
        "characters": chars,
        **({"tokens": tokens} if tokenizer is not None else {}),
        "languages": dict(languages.most_common()),
        "pii_masked": dict(pii),
        "not_quality_filtered": dict(unfiltered),  # step -> documents in unsupported languages
    }


def _removed(root: Path, examples: int, progress) -> dict:
    """Per excluding step: documents and reasons, and the first `examples` documents."""
    steps = {}
    for step_dir in sorted(p for p in (root / "excluded").glob("*") if p.is_dir()):
        reasons: collections.Counter = collections.Counter()
        shown = []
        for path in sorted(step_dir.rglob("*.jsonl.gz")):
            if CUTS_DIR in path.relative_to(step_dir).parts:
                continue  # substring dedup's cuts: text cut from documents it kept
            # Filters write whole Documents; dedup writes records with `reason`, `duplicate_of`
            # and a `text_prefix` (llm_data.dedup).
            for doc in _records(path):
                meta = doc.get("metadata") or {}
                reason = meta.get("filter_reason") or doc.get("reason") or step_dir.name
                reasons[reason] += 1
                if len(shown) < examples:
                    text = " ".join((doc.get("text") or doc.get("text_prefix", "")).split())
                    source = meta.get("source", doc.get("source", "-"))
                    example = {"id": doc["id"], "source": source,
                               "language": meta.get("language", "-"), "reason": reason,
                               "text": text[:_PREVIEW_CHARS]}  # fmt: skip
                    if "duplicate_of" in doc:
                        example["duplicate_of"] = doc["duplicate_of"]
                    shown.append(example)
            progress.update(1)
        steps[step_dir.name] = {
            "documents": sum(reasons.values()),
            "reasons": dict(reasons.most_common()),
            "examples": shown,
        }
    return steps


def inspect_curated(path: Path | str, examples: int = 3, tokenizer: Path | None = None) -> dict:
    """Counts, languages, words (and tokens, given a `tokenizer.json`) and removed documents of
    a curated folder.

    Raises:
        FileNotFoundError: `path` has no `curation_stats.json` (not a finished curation).
    """
    from tqdm import tqdm

    root = Path(path)
    stats_file = root / STATS_FILE
    if not stats_file.is_file():
        raise FileNotFoundError(
            f"{root}: no {STATS_FILE}; not the output_dir of a finished curation"
        )
    stats = json.loads(stats_file.read_text())
    hf_tokenizer = None
    if tokenizer is not None:
        from llm_data.tokenizer import load_tokenizer  # tokenizers: a dependency of datatrove

        hf_tokenizer = load_tokenizer(tokenizer)  # encodes as the shards do
    sources = {
        p.name: sorted(p.glob("*.jsonl.gz"))
        for p in sorted(root.iterdir())
        if p.is_dir() and p.name not in NOT_SOURCES
    }
    n_files = sum(len(f) for f in sources.values()) + len(list(root.glob("excluded/**/*.jsonl.gz")))
    with tqdm(total=n_files, desc="reading", unit="file", disable=n_files < 20) as progress:
        report = {
            name: _source_summary(files, progress, hf_tokenizer) for name, files in sources.items()
        }
        removed = _removed(root, examples, progress)
    for name, summary in report.items():
        summary["stages"] = stats.get(name, {}).get("stages", [])
    return {"path": str(root), "sources": report, "removed": removed}


def render_report(report: dict) -> str:
    """`inspect_curated`'s report as text for a terminal."""
    lines = [f"curated folder {report['path']}"]
    for name, s in report["sources"].items():
        langs = ", ".join(f"{k} {v}" for k, v in list(s["languages"].items())[:12])
        tokens = f", {s['tokens']} tokens" if "tokens" in s else ""
        lines += [
            f"\n{name}: {s['documents']} documents, {s['words']} words, {s['characters']} chars"
            f"{tokens}",
            f"  languages: {langs}",
        ]
        if s["pii_masked"]:
            lines.append(f"  PII masked: {s['pii_masked']}")
        if s["not_quality_filtered"]:
            lines.append(f"  kept unfiltered (unsupported language): {s['not_quality_filtered']}")
        for row in s["stages"]:
            why = ", ".join(f"{k} {v}" for k, v in row.get("removed_by", {}).items())
            lines.append(f"  {row['stage']:<28} in {row['in']:>7}  kept {row['kept']:>7}  {why}")
    for step, r in report["removed"].items():
        lines.append(f"\nremoved by {step}: {r['documents']} ({r['reasons']})")
        for ex in r["examples"]:
            lines.append(f"  [{ex['reason']}] {ex['source']}/{ex['id']} ({ex['language']}): "
                         f"{ex['text']}")  # fmt: skip
    return "\n".join(lines)
