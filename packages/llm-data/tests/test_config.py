from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from llm_data import CurationConfig, DedupConfig, GopherConfig, SlurmConfig, SourceConfig


def _config(**kw) -> CurationConfig:
    sources = [
        SourceConfig(name="web", path="data/web/*.warc.gz", format="warc"),
        SourceConfig(name="code", path="data/code", format="jsonl", quality_filters=False),
    ]
    return CurationConfig(sources=sources, output_dir="out", **kw)


def test_round_trips_through_omegaconf_structured():
    config = _config(languages=("en", "de"), gopher=GopherConfig(min_doc_words=20))
    merged = OmegaConf.merge(OmegaConf.structured(CurationConfig), OmegaConf.structured(config))
    back = OmegaConf.to_object(merged)
    assert back == config
    assert isinstance(back.sources[1], SourceConfig) and back.sources[1].quality_filters is False
    assert back.gopher.min_doc_words == 20


def test_omegaconf_rejects_bad_format_literal():
    base = OmegaConf.structured(_config())
    with pytest.raises(Exception, match="format"):
        OmegaConf.merge(base, {"sources": [{"name": "x", "path": "p", "format": "csv"}]})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_language_score": 1.5}, "min_language_score"),
        ({"tasks": 0}, "tasks"),
        ({"workers": 0}, "workers"),
        ({"languages": ("english",)}, "languages"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _config(**kwargs)


def test_sources_must_be_unique_and_valid():
    with pytest.raises(ValueError, match="unique"):
        CurationConfig(
            sources=[SourceConfig(name="a", path="x", format="warc")] * 2, output_dir="out"
        )
    with pytest.raises(ValueError, match="format"):
        SourceConfig(name="a", path="x", format="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source.name"):
        SourceConfig(name="a/b", path="x", format="warc")
    with pytest.raises(ValueError, match="gopher.max_symbol_word_ratio"):
        GopherConfig(max_symbol_word_ratio=2.0)


def test_shard_config_validates_and_round_trips():
    from dataclasses import asdict

    from llm_data import ShardConfig

    cfg = OmegaConf.to_object(OmegaConf.structured(ShardConfig(seq_len=64)))
    assert asdict(cfg) == {
        "seq_len": 64, "heldout_fraction": 0.01, "seed": 0, "overwrite": False, "tasks": 1,
        "workers": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="heldout_fraction"):
        ShardConfig(heldout_fraction=1.0)


def test_dedup_and_executor_settings_round_trip_through_omegaconf():
    config = _config(
        dedup=DedupConfig(minhash=False, bands=20, rows=5),
        executor="slurm",
        slurm=SlurmConfig(partition="cpu", time="1-00:00:00", sbatch_args={"account": "p"}),
    )
    merged = OmegaConf.merge(OmegaConf.structured(CurationConfig), OmegaConf.structured(config))
    assert OmegaConf.to_object(merged) == config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"executor": "spark"}, "executor"),
        ({"executor": "slurm"}, "slurm.partition"),
    ],
)
def test_executor_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _config(**kwargs)


def test_slurm_and_dedup_settings_are_validated():
    with pytest.raises(ValueError, match="slurm.time"):
        SlurmConfig(partition="p", time="soon")
    with pytest.raises(ValueError, match="dedup.rows"):
        DedupConfig(rows=0)


def test_how_curation_runs_is_not_part_of_its_fingerprint():
    """`RUNTIME_FIELDS` is the one list of settings that do not change the curated documents
    (apps/pretrain leaves the same ones out of its stage records)."""
    import dataclasses

    from llm_data.config import RUNTIME_FIELDS
    from llm_data.curation import _fingerprint

    base = CurationConfig(sources=[SourceConfig(name="a", path="a", format="jsonl")])
    runtime = dict(workers=4, overwrite=True, executor="ray", skip_completed=False)
    assert set(runtime) <= RUNTIME_FIELDS
    assert _fingerprint(dataclasses.replace(base, **runtime), {}) == _fingerprint(base, {})
    assert _fingerprint(dataclasses.replace(base, tasks=2), {}) != _fingerprint(base, {})
