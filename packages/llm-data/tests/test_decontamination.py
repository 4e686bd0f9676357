from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from llm_data import CurationConfig, DecontaminationConfig, InputError, SourceConfig, run_curation
from llm_data.decontamination import build_eval_index, ngram_hashes, words

ITEM = {  # 17 words of context + gold answer
    "task": "toy_qa",
    "id": 0,
    "contexts": ["Question: Which gas do green plants take in from the air to make sugar?\nAnswer:"]
    * 2,
    "choices": [" oxygen", " carbon dioxide"],
    "gold": 1,
}
SHORT = {
    "task": "toy_short",
    "id": 1,
    "contexts": ["The cat sat on the warm and sunny"],
    "choices": [" mat"],
    "gold": ["mat", "rug", "sofa"],
}  # fmt: skip  (9 words with the target continuation)
TINY = {"task": "toy_tiny", "id": 2, "contexts": ["Two plus two"], "choices": [" four"], "gold": 0}


@pytest.fixture()
def index(tmp_path):
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in (ITEM, SHORT, TINY)))
    return build_eval_index((str(path),), n=13, min_words=8)


def test_window_hashes_depend_only_on_the_window():
    tokens = words("a b c d e f a b c d")
    all4 = ngram_hashes(tokens, 4)
    assert len(all4) == 7
    assert all(all4[i] == ngram_hashes(tokens[i : i + 4], 4)[0] for i in range(7))
    assert all4[0] == all4[6]  # "a b c d" twice
    assert len(set(all4.tolist())) == 6
    assert ngram_hashes(tokens, 11).dtype == np.uint64 and len(ngram_hashes(tokens, 11)) == 0


def test_index_counts_items_and_lengths(index):
    assert index.items == 3 and index.skipped == 1  # TINY has 4 words < min_words
    assert index.tasks == ["toy_qa", "toy_short"]
    assert index.lengths == [9, 13]
    assert len(index.hashes[13]) == 17 - 13 + 1 and len(index.hashes[9]) == 1


def test_leaked_item_is_found_despite_case_and_punctuation(index):
    page = (
        "Homework help! QUESTION -- which gas do green plants take in, from the air, to make "
        "sugar? answer: Carbon dioxide. Thanks for reading."
    )
    assert index.first_match(page) == "toy_qa"
    short = "Nursery rhymes: the cat sat on the warm and sunny mat, and so on."
    assert index.first_match(short) == "toy_short"


def test_decontamination_looks_for_the_text_llm_eval_scores(tmp_path):
    """A generation item's gold text is its context + target continuation (``choices[0]``), as
    llm-eval scores it; decontamination used to index the context + every accepted answer
    joined ("... warm and sunny mat rug sofa"), so a document holding the scored text was kept."""
    from llm_formats.eval_items import read_items

    path = tmp_path / "toy.jsonl"
    path.write_text(json.dumps(SHORT) + "\n")
    (item,) = read_items(path)
    index = build_eval_index((str(path),), n=13, min_words=8)
    assert index.items == 1 and index.skipped == 0
    assert index.first_match("Rhymes: " + item.gold_text + ". The end.") == "toy_short"


def test_partial_overlap_below_n_words_is_clean(index):
    twelve = "which gas do green plants take in from the air to make"  # 12 of the item's words
    assert index.first_match(f"A study asks {twelve} anything at all.") is None
    assert index.first_match("Two plus two four") is None  # too short to be indexed


def test_sample_eval_sets_do_not_flag_shakespeare(helpers):
    files = sorted((helpers.SAMPLE / "eval").glob("*.jsonl.gz"))
    index = build_eval_index((str(helpers.SAMPLE / "eval"),))
    assert index.items == sum(gzip.decompress(f.read_bytes()).count(b"\n") for f in files) >= 1000
    assert index.tasks == [f.name.removesuffix(".jsonl.gz") for f in files]
    assert "boolq" in index.tasks
    with gzip.open(helpers.SAMPLE / "books" / "shakespeare.jsonl.gz", "rt") as f:
        hamlet = json.loads(f.readline())["text"]
    assert index.first_match(hamlet) is None


def test_curation_drops_the_contaminated_document(tmp_path, helpers):
    with gzip.open(helpers.SAMPLE / "eval" / "sciq.jsonl.gz", "rt") as f:
        item = json.loads(f.readline())
    leaked = "Study notes. " + item["contexts"][item["gold"]] + item["choices"][item["gold"]]
    docs = [{"id": "clean", "text": "Plain prose about the weather, nothing to see here."},
            {"id": "leak", "text": leaked}]  # fmt: skip
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    config = CurationConfig(
        sources=[
            SourceConfig(
                name="docs",
                path=str(tmp_path / "docs.jsonl"),
                format="jsonl",
                quality_filters=False,
            )
        ],  # fmt: skip
        output_dir=str(tmp_path / "out"),
        decontamination=DecontaminationConfig(eval_paths=(str(helpers.SAMPLE / "eval"),)),
    )
    stats = run_curation(config)["docs"]
    (decontamination,) = [s for s in stats["stages"] if s["stage"] == "DecontaminationFilter"]
    assert decontamination == {
        "stage": "DecontaminationFilter",
        "in": 2,
        "kept": 1,
        "removed": 1,
        "removed_by": {"contaminated_sciq": 1},
    }
    assert stats["documents_out"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"task": "t", "id": 1, "contexts": ["c"], "choices": ["a"]}',
            r"bad\.jsonl:2: missing field 'gold'",
        ),
        ("{not json", r"bad\.jsonl:2: invalid JSON"),
        (
            '{"task": "t", "id": 1, "contexts": ["c"], "choices": ["a"], "gold": 5}',
            r"bad\.jsonl:2: field 'gold' must be an index in \[0, 1\)",
        ),
        (
            '{"task": "t", "id": 1, "contexts": ["c"], "choices": ["a"], "gold": true}',
            r"bad\.jsonl:2: field 'gold'",
        ),  # llm-eval refuses a bool gold; so does decontamination
    ],
)
def test_bad_eval_file_names_file_line_and_field(tmp_path, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEM) + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        build_eval_index((str(bad),))


def test_bad_eval_path_fails_before_any_output(tmp_path, helpers):
    config = CurationConfig(
        sources=[SourceConfig(name="books", path=str(helpers.SAMPLE / "books"), format="jsonl")],
        output_dir=str(tmp_path / "out"),
        decontamination=DecontaminationConfig(eval_paths=(str(tmp_path / "no-evals"),)),
    )
    with pytest.raises(InputError, match=r"eval path .*no-evals.* does not exist"):
        run_curation(config)
    assert list(tmp_path.iterdir()) == []


def test_config_rejects_bad_lengths():
    with pytest.raises(ValueError, match="decontamination.ngram"):
        DecontaminationConfig(ngram=0)
    with pytest.raises(ValueError, match="decontamination.min_words"):
        DecontaminationConfig(ngram=5, min_words=8)
