"""Statistics of documents grouped per source and per language, for one or many tokenizers,
as Markdown, CSV and a plot."""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_tokenize.corpus import Document
from llm_tokenize.stats import Row, group_stats, is_unspaced

# The columns of the CSV (long format: one row per tokenizer and group).
CSV_FIELDS = (
    "tokenizer", "kind", "group", "docs", "bytes", "tokens", "bytes_per_token", "chars_per_token",
    "fertility", "fertility_unit", "vocab_used", "byte_fallback", "round_trip_failures",
    "nfc_changed",
)  # fmt: skip


def group_documents(docs: Sequence[Document]) -> dict[str, dict[str, list[Document]]]:
    """``{"source": {name: docs}, "language": {code: docs}}``; documents without a language
    appear only under their source."""
    groups: dict[str, dict[str, list[Document]]] = {"source": {}, "language": {}}
    for doc in docs:
        groups["source"].setdefault(doc.source, []).append(doc)
        if doc.language:
            groups["language"].setdefault(doc.language, []).append(doc)
    groups["language"] = dict(sorted(groups["language"].items()))
    return groups


def corpus_report(tokenizer, docs: Sequence[Document]) -> dict[str, dict[str, Row]]:
    """`group_stats` per source and per language: ``{"source": {...}, "language": {...}}``."""
    return {
        kind: {
            name: group_stats(
                tokenizer,
                [d.text for d in members],
                unspaced=kind == "language" and is_unspaced(name),
                ids=[f"{d.source}/{d.id}" for d in members],
            )
            for name, members in groups.items()
        }
        for kind, groups in group_documents(docs).items()
    }


def encode_throughput(tokenizer, texts: Sequence[str]) -> float:
    """MB/s (UTF-8 bytes) of one `encode_batch` over ``texts`` on this machine."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    start = time.perf_counter()
    tokenizer.encode_batch(list(texts))
    return n_bytes / 1e6 / max(time.perf_counter() - start, 1e-9)


def compare(tokenizers: dict[str, Any], docs: Sequence[Document]) -> list[Row]:
    """One row per tokenizer, kind ("source" / "language") and group, with `group_stats`."""
    rows = []
    for name, tok in tokenizers.items():
        for kind, groups in corpus_report(tok, docs).items():
            rows += [{"tokenizer": name, "kind": kind, "group": g, **r} for g, r in groups.items()]
    return rows


def to_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


METRICS = {  # column heading, format, explanation
    "bytes_per_token": ("bytes/token", ".3f", "UTF-8 bytes per token (higher compresses better)"),
    "fertility": ("fertility", ".3f", "tokens per whitespace word; per character (/char) for "
                  "languages written without spaces"),
    "vocab_used": ("vocabulary used", ".1%", "share of the vocabulary that occurs in the group"),
    "byte_fallback": ("byte fallback", ".2%", "share of tokens that are pieces of a character"),
}  # fmt: skip


def to_markdown(rows: Sequence[Row]) -> str:
    """One table per metric: a row per group, a column per tokenizer; then round-trip results."""
    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    by_key = {(r["kind"], r["group"], r["tokenizer"]): r for r in rows}
    groups = list(dict.fromkeys((r["kind"], r["group"]) for r in rows))
    lines: list[str] = []
    for metric, (heading, spec, explanation) in METRICS.items():
        lines += [f"### {heading}", "", f"{explanation}.", ""]
        lines += ["| kind | group | " + " | ".join(names) + " |"]
        lines += ["| --- | --- |" + " ---: |" * len(names)]
        for kind, group in groups:
            cells = []
            for name in names:
                row = by_key.get((kind, group, name))
                cell = "" if row is None else _fmt(row[metric], spec)
                if metric == "fertility" and row and row["fertility_unit"] == "char":
                    cell += " /char"
                cells.append(cell)
            lines.append(f"| {kind} | {group} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _round_trip_lines(rows, names)
    return "\n".join(lines)


def _round_trip_lines(rows: Sequence[Row], names: list[str]) -> list[str]:
    lines = ["### round trip", "", "decode(encode(text)) == text, byte for byte, per document.", ""]
    for name in names:
        mine = [r for r in rows if r["tokenizer"] == name and r["kind"] == "source"]
        docs = sum(r["docs"] for r in mine)
        failed = [i for r in mine for i in r["failed_ids"]]
        n_failed = sum(r["round_trip_failures"] for r in mine)
        nfc = sum(r["nfc_changed"] for r in mine)
        note = f" ({nfc} changed by NFC, compared in NFC form)" if nfc else ""
        status = "all identical" if n_failed == 0 else f"{n_failed} differ, e.g. {failed}"
        lines.append(f"- {name}: {docs} documents, {status}{note}")
    return lines + [""]


def round_trip_failures(rows: Sequence[Row]) -> int:
    return sum(r["round_trip_failures"] for r in rows if r["kind"] == "source")


def plot(rows: Sequence[Row], path: Path) -> Path:
    """Bars of bytes/token and fertility per group, one colour per tokenizer (needs the
    ``llm-tokenize[plots]`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'llm-tokenize[plots]'") from err
    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    groups = list(dict.fromkeys(r["group"] for r in rows))
    values: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        for metric in ("bytes_per_token", "fertility"):
            values[metric][r["tokenizer"]][r["group"]] = r[metric] or 0.0
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(groups) * len(names) ** 0.5), 8))
    width = 0.8 / len(names)
    for ax, metric in zip(axes, ("bytes_per_token", "fertility"), strict=True):
        for k, name in enumerate(names):
            xs = [i + k * width for i in range(len(groups))]
            ax.bar(xs, [values[metric][name].get(g, 0.0) for g in groups], width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], groups, rotation=60)
        ax.set_ylabel(METRICS[metric][0] + (" (/char for ja, zh)" if metric == "fertility" else ""))
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncols=min(5, len(names)), loc="lower left", bbox_to_anchor=(0, 1))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
