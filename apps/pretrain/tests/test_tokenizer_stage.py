"""The tokenizer stage's sources: the curated output by default, a mixture when configured."""

import pytest

from pretrain.config import load_pretrain_config
from pretrain.stages import tokenizer_sources


def test_default_is_every_curated_source_once(tmp_path):
    for name in ("web", "code"):  # books: curation kept nothing, so it has no file
        (tmp_path / name).mkdir()
        (tmp_path / name / "00000.jsonl.gz").write_bytes(b"")
    sources = tokenizer_sources(load_pretrain_config(None, []), tmp_path)
    assert [(s.name, s.paths, s.proportion) for s in sources] == [
        ("web", [str(tmp_path / "web")], None),
        ("code", [str(tmp_path / "code")], None),
    ]


def test_a_mixture_reads_curated_text_or_given_paths(tmp_path):
    config = load_pretrain_config(
        None,
        [
            "tokenizer.sources=[{name: web, proportion: 0.7},"
            " {name: extra, paths: [more/*.jsonl], proportion: 0.3}]"
        ],
    )
    sources = tokenizer_sources(config, tmp_path)
    assert [(s.name, s.paths, s.proportion) for s in sources] == [
        ("web", [str(tmp_path / "web")], 0.7),
        ("extra", ["more/*.jsonl"], 0.3),
    ]


def test_a_source_without_paths_must_be_a_data_source(tmp_path):
    config = load_pretrain_config(None, ["tokenizer.sources=[{name: wbe}]"])
    with pytest.raises(ValueError, match="'wbe' has no paths and is not a data source"):
        tokenizer_sources(config, tmp_path)
