from __future__ import annotations

from datatrove.data import Document

from llm_data.dedup import ExactDedupFilter, normalized_text_hash


def test_hash_ignores_case_and_whitespace_only():
    base = normalized_text_hash("Hello  world\n\tagain")
    assert normalized_text_hash("  hello world AGAIN ") == base
    assert normalized_text_hash("Hello world, again") != base
    assert normalized_text_hash("ｈｅｌｌｏ world again") == base  # NFKC folds full-width letters


def test_filter_keeps_first_copy_and_counts():
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(["a b", "c", "A  B", "c", "d"])]
    step = ExactDedupFilter()
    kept = [d.id for d in step.run(iter(docs))]
    assert kept == ["0", "1", "4"]
    assert step.stats.stats["dropped"].total == 2
    assert step.stats.stats["dropped_exact_duplicate"].total == 2
