"""Decontamination: drop training documents that contain text of an evaluation item.

The test is GPT-3's (Brown et al. 2020, appendix C): a document is contaminated when it shares a
word n-gram (13 by default) with an eval item's gold text (`EvalItem.gold_text`: the gold
context + continuation, the text llm-eval scores), after lower-casing and
dropping punctuation. Items shorter than n words are matched whole when they have at least
`min_words` words, and skipped otherwise (too short to be evidence of a leak).

n-grams are hashed without building strings: each word gets a 64-bit xxh3 hash, and an n-gram's
hash is a polynomial of its word hashes (mod 2^64), computed for all windows of a document with
n vectorised numpy steps. Eval n-gram hashes live in one sorted array, looked up with searchsorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from llm_data.readers import InputError
from llm_formats.eval_items import EvalItem, read_items
from llm_formats.jsonl import FormatError, is_jsonl

__all__ = ["DecontaminationFilter", "EvalIndex", "build_eval_index", "ngram_hashes"]

_WORD = re.compile(r"\w+")
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier: windows differing in one word differ


def words(text: str) -> list[str]:
    """Lower-cased word characters runs: punctuation, case and spacing do not matter."""
    return _WORD.findall(text.lower())


def ngram_hashes(tokens: list[str], n: int) -> np.ndarray:
    """uint64 hashes of every window of `n` consecutive `tokens` (empty if fewer than n)."""
    return _window_hashes(_word_hashes(tokens), n)


def _word_hashes(tokens: list[str]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(t) for t in tokens), np.uint64, len(tokens))


def _window_hashes(h: np.ndarray, n: int) -> np.ndarray:
    windows = len(h) - n + 1
    if windows <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around mod 2^64 is the point
        for j in range(n):
            acc = acc * _BASE + h[j : j + windows]
    return acc


@dataclass
class EvalIndex:
    """Hashed n-grams of eval items, sorted, with the task each one came from.

    Attributes:
        lengths: n-gram lengths indexed (n, plus the lengths of whole short items).
        hashes: per length, sorted uint64 hashes.
        task_ids: per length, the index into `tasks` of each hash.
        tasks: task names.
        items: eval items read; `skipped`: items shorter than `min_words`.
    """

    lengths: list[int]
    hashes: dict[int, np.ndarray]
    task_ids: dict[int, np.ndarray]
    tasks: list[str]
    items: int
    skipped: int

    def first_match(self, text: str) -> str | None:
        """The task of the first eval n-gram found in `text`, or None."""
        word_hashes = _word_hashes(words(text))  # once, for every indexed length
        for n in self.lengths:
            grams = _window_hashes(word_hashes, n)
            table = self.hashes[n]
            pos = np.searchsorted(table, grams).clip(max=len(table) - 1)
            hit = np.flatnonzero(table[pos] == grams)
            if hit.size:
                return self.tasks[int(self.task_ids[n][pos[hit[0]]])]
        return None


def _eval_files(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if is_jsonl(f))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"decontamination: eval path {str(p)!r} does not exist")
    if not files:
        raise InputError(f"decontamination: no .jsonl(.gz) eval files under {list(paths)}")
    return files


def _eval_items(paths: tuple[str, ...]) -> Iterator[EvalItem]:
    """Every eval item of the files under `paths`, validated as llm-eval validates it."""
    for path in _eval_files(paths):
        try:
            yield from read_items(path)  # the whole file first: a bad line fails before indexing
        except FormatError as err:
            raise InputError(str(err)) from err


def build_eval_index(paths: tuple[str, ...], n: int = 13, min_words: int = 8) -> EvalIndex:
    """Index the eval items of every JSONL file under `paths` (files or folders).

    Raises:
        InputError: a missing path, a line that is not JSON, or an item that breaks the eval
            schema (`llm_formats.eval_items`), naming file, line and field.
    """
    grams: dict[int, list[np.ndarray]] = {}
    owners: dict[int, list[np.ndarray]] = {}
    tasks: list[str] = []
    items = skipped = 0
    for item in _eval_items(paths):
        tokens = words(item.gold_text)  # the text llm-eval scores (one definition)
        items += 1
        if len(tokens) < min_words:
            skipped += 1
            continue
        length = min(n, len(tokens))
        if item.task not in tasks:
            tasks.append(item.task)
        hashes = ngram_hashes(tokens, length)
        grams.setdefault(length, []).append(hashes)
        owner = np.full(len(hashes), tasks.index(item.task), dtype=np.int32)
        owners.setdefault(length, []).append(owner)
    sorted_hashes, sorted_tasks = {}, {}
    for length in grams:
        h, t = np.concatenate(grams[length]), np.concatenate(owners[length])
        order = np.argsort(h, kind="stable")
        sorted_hashes[length], sorted_tasks[length] = h[order], t[order]
    return EvalIndex(sorted(grams), sorted_hashes, sorted_tasks, tasks, items, skipped)


class DecontaminationFilter(BaseFilter):
    """Drop documents sharing an n-gram with an eval item; the reason names the task."""

    name = "🧪 Decontamination"

    def __init__(self, index: EvalIndex):
        super().__init__()
        self.index = index

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        task = self.index.first_match(doc.text)
        if task is None:
            return True
        return False, f"contaminated_{task}"
