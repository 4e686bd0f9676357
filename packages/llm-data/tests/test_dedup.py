"""Global exact / URL dedup across tasks and sources, the exclusion output and resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_data import CurationConfig, DedupConfig, SourceConfig, run_curation
from llm_data.dedup import normalized_text_hash
from llm_data.urls import normalize_url


def test_hash_ignores_case_and_whitespace_only():
    base = normalized_text_hash("Hello  world\n\tagain")
    assert normalized_text_hash("  hello world AGAIN ") == base
    assert normalized_text_hash("Hello world, again") != base
    assert normalized_text_hash("ｈｅｌｌｏ world again") == base  # NFKC folds full-width letters


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTP://Example.COM:80/a/b/#part", "http://example.com/a/b"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com/p?utm_source=x&b=2&fbclid=1&a=1", "https://example.com/p?a=1&b=2"),
        ("https://example.com:8443/Path/", "https://example.com:8443/Path"),
        ("mailto:someone@example.com", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_url(url, normalized):
    assert normalize_url(url) == normalized


def _word(n: int) -> str:
    # Letters only: MinHash's text normalisation maps every digit to 0.
    letters = ""
    while True:
        n, r = divmod(n, 26)
        letters += chr(ord("a") + r)
        if n == 0:
            return "q" + letters


def _doc_text(i: int, words: int = 60) -> str:
    # Distinct texts far apart (no shared 5-gram), so that MinHash leaves them alone.
    return " ".join(_word(1000 * i + j) for j in range(words))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> dict:
    """Sources "a" (two files: two tasks) and "b" sharing documents, then one curation run.

    - "same": one text in both of a's files and in b (b's copy is the longest: extra spaces).
    - "twin": one text twice in b's file with different ids (same length: the smaller id wins).
    - "page": one URL spelled three ways (a: 2 copies, b: 1), texts of different lengths.
    """
    root = tmp_path_factory.mktemp("dedup")
    same = _doc_text(1)
    url = "https://example.org/page"
    a1 = [
        {"id": "a1-same", "text": same},
        {"id": "a1-page", "text": _doc_text(2), "metadata": {"url": url + "/"}},
        {"id": "a1-own", "text": _doc_text(3)},
    ]
    a2 = [
        {"id": "a2-same", "text": same},
        {
            "id": "a2-page",
            "text": _doc_text(4, 90),
            "metadata": {"url": "HTTPS://EXAMPLE.org/page"},
        },
    ]
    b = [
        {"id": "b-same", "text": same.replace(" ", "  ")},
        {"id": "b-twin2", "text": _doc_text(5)},
        {"id": "b-twin1", "text": _doc_text(5)},
        {"id": "b-page", "text": _doc_text(6, 70), "metadata": {"url": url + "?utm_source=x#top"}},
    ]
    _write_jsonl(root / "a" / "1.jsonl", a1)
    _write_jsonl(root / "a" / "2.jsonl", a2)
    _write_jsonl(root / "b" / "1.jsonl", b)
    out = root / "out"
    config = CurationConfig(
        sources=[
            SourceConfig(name="a", path=str(root / "a"), format="jsonl", quality_filters=False),
            SourceConfig(name="b", path=str(root / "b"), format="jsonl", quality_filters=False),
        ],
        output_dir=str(out),
        tasks=2,
    )
    return {"root": root, "out": out, "config": config, "stats": run_curation(config)}


def test_exact_dedup_is_global_across_tasks_and_sources(two_sources, helpers):
    out = two_sources["out"]
    kept = {d["id"] for d in helpers.read_curated(out / "a") + helpers.read_curated(out / "b")}
    # One copy of "same" (b's, the longest), one twin (smallest id), one page (longest text).
    assert kept == {"b-same", "b-twin1", "a2-page", "a1-own"}
    stats = two_sources["stats"]
    exact_a = next(r for r in stats["a"]["stages"] if r["stage"] == "ExactDedup")
    assert exact_a["removed_by"] == {"exact_duplicate": 2}
    assert exact_a["duplicate_of_source"] == {"b": 2}
    url_b = next(r for r in stats["b"]["stages"] if r["stage"] == "UrlDedup")
    assert url_b["removed_by"] == {"url_duplicate": 1}
    assert stats["a"]["documents_out"] + stats["b"]["documents_out"] == 4


def test_exclusion_output_names_the_kept_copy(two_sources, helpers):
    excluded = two_sources["out"] / "excluded"
    records = {
        r["id"]: r
        for r in helpers.read_curated(excluded / "exact") + helpers.read_curated(excluded / "url")
    }
    assert set(records) == {"a1-same", "a2-same", "b-twin2", "a1-page", "b-page"}
    assert records["a1-same"]["duplicate_of"] == "b-same"
    assert records["a1-same"]["duplicate_of_source"] == "b"
    assert records["b-twin2"]["duplicate_of"] == "b-twin1"
    assert records["b-page"] == {
        "id": "b-page",
        "reason": "url_duplicate",
        "duplicate_of": "a2-page",
        "duplicate_of_source": "a",
        "source": "b",
        "url": "https://example.org/page?utm_source=x#top",
        "text_prefix": _doc_text(6, 70)[:200],
    }


def test_same_result_for_any_task_split(two_sources, tmp_path, helpers):
    config = two_sources["config"]
    out = tmp_path / "one-task"
    one = CurationConfig(**{**vars(config), "output_dir": str(out), "tasks": 1})
    run_curation(one)
    ids = {d["id"] for d in helpers.read_curated(out / "a") + helpers.read_curated(out / "b")}
    assert ids == {"b-same", "b-twin1", "a2-page", "a1-own"}


_KILL_SCRIPT = """
import os, signal, sys
from llm_data import CurationConfig, SourceConfig, run_curation
from llm_data import dedup

if os.environ.get("KILL_AT_RANK"):
    original = dedup.KeyDedupFilter.run

    def run(self, data, rank=0, world_size=1):
        for i, doc in enumerate(original(self, data, rank, world_size)):
            if rank == int(os.environ["KILL_AT_RANK"]):
                os.kill(os.getpid(), signal.SIGKILL)  # mid-task, outputs half written
            yield doc

    dedup.KeyDedupFilter.run = run
root = sys.argv[1]
run_curation(CurationConfig(
    sources=[
        SourceConfig(name="a", path=root + "/a", format="jsonl", quality_filters=False),
        SourceConfig(name="b", path=root + "/b", format="jsonl", quality_filters=False),
    ],
    output_dir=root + "/resumed", tasks=2,
))
"""


def test_killed_run_resumes_without_redoing_completed_tasks(two_sources, helpers):
    root = two_sources["root"]
    script = textwrap.dedent(_KILL_SCRIPT)
    env = {**os.environ, "KILL_AT_RANK": "1"}
    killed = subprocess.run([sys.executable, "-c", script, str(root)], env=env, check=False)
    assert killed.returncode == -9
    partial = root / ".resumed.partial"
    logs = partial / "logs"
    done = {p: p.stat().st_mtime_ns for p in logs.glob("**/completions/*")}
    names = {str(p.relative_to(logs)) for p in done}
    # Both sources filtered, exact signatures and duplicates found, exact-filter task 0 done.
    assert {"a/completions/00000", "b/completions/00000"} <= names
    assert "_dedup/exact-filter/completions/00000" in names
    assert "_dedup/exact-filter/completions/00001" not in names
    resumed = subprocess.run([sys.executable, "-c", script, str(root)], check=False)
    assert resumed.returncode == 0
    out = root / "resumed"
    for path, mtime in done.items():  # completed tasks were not run again
        assert (out / "logs" / path.relative_to(logs)).stat().st_mtime_ns == mtime
    assert (out / "logs/_dedup/exact-filter/completions/00001").is_file()
    assert not partial.exists()
    expected = two_sources["out"]
    for folder in ("a", "b", "excluded/exact", "excluded/url"):
        got = sorted(json.dumps(d, sort_keys=True) for d in helpers.read_curated(out / folder))
        assert got == sorted(
            json.dumps(d, sort_keys=True) for d in helpers.read_curated(expected / folder)
        )
    stats = json.loads((out / "curation_stats.json").read_text())
    assert _without_seconds(stats) == _without_seconds(two_sources["stats"])


def _without_seconds(stats: dict) -> dict:
    return {source: {k: v for k, v in r.items() if k != "seconds"} for source, r in stats.items()}


def test_dedup_config_validates():
    with pytest.raises(ValueError, match="dedup.bands"):
        DedupConfig(bands=0)
    with pytest.raises(ValueError, match="dedup.ngram"):
        DedupConfig(ngram=0)
