"""llm_formats.checkpoint: step directory names, listing, the manifest's schema and check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_formats.atomic import sha256_file
from llm_formats.checkpoint import (
    MANIFEST,
    STEP_GLOB,
    ManifestError,
    finalize,
    hash_files,
    manifest_model_config,
    owner,
    rank_files,
    read_manifest,
    read_rank_hashes,
    stale_tmp_dirs,
    step_dir_name,
    step_dirs,
    step_of,
    tmp_dir,
    verify,
    write_manifest,
    write_rank_hashes,
)


def make_checkpoint(root: Path, step: int, **fields) -> Path:
    final = root / step_dir_name(step)
    tmp = tmp_dir(final)
    tmp.mkdir(parents=True)
    (tmp / ".metadata").write_bytes(b"meta")
    (tmp / "__0_0.distcp").write_bytes(b"tensors" * 100)
    write_manifest(tmp, {"step": step, "tokens": 10 * step, **fields}, hash_files(tmp))
    return finalize(tmp, final)


def test_step_names_round_trip_and_sort_as_steps():
    assert step_dir_name(123) == "step_000123" and step_of("step_000123") == 123
    assert step_of(step_dir_name(1_234_567)) == 1_234_567  # past six digits still parses
    for other in ("step_000123.tmp", "step_", "step_12a", "steps_000001", "x"):
        assert step_of(other) is None
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(ValueError, match="step must be an int"):
            step_dir_name(bad)


def test_step_dirs_newest_first_without_tmp_or_junk(tmp_path):
    for step in (5, 40, 1_000_000):
        make_checkpoint(tmp_path, step)
    (tmp_path / "step_000050.tmp").mkdir()  # a crash's leftover
    (tmp_path / "step_000060").write_text("a file, not a checkpoint")
    (tmp_path / "notes").mkdir()
    assert [p.name for p in step_dirs(tmp_path)] == ["step_1000000", "step_000040", "step_000005"]
    assert [p.name for p in stale_tmp_dirs(tmp_path)] == ["step_000050.tmp"]
    assert sorted(p.name for p in tmp_path.glob(STEP_GLOB) if p.is_dir()) == sorted(
        p.name for p in step_dirs(tmp_path)
    )
    assert step_dirs(tmp_path / "missing") == [] and stale_tmp_dirs(tmp_path / "missing") == []


def test_manifest_round_trips_and_verifies(tmp_path):
    model = {"d_model": 64, "n_layers": 2}
    path = make_checkpoint(tmp_path, 3, model_config=model, tokenizer_card_sha256="ab" * 32)
    manifest = read_manifest(path)
    assert manifest["step"] == 3 and manifest["tokens"] == 30
    assert manifest["files"] == {
        ".metadata": sha256_file(path / ".metadata"),
        "__0_0.distcp": sha256_file(path / "__0_0.distcp"),
    }
    assert manifest_model_config(manifest, path) == model
    assert verify(path, required=(".metadata",)) is None
    assert not tmp_dir(path).exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: (p / "__0_0.distcp").write_bytes(b"changed"), "sha256 mismatch for __0_0"),
        (lambda p: (p / "__0_0.distcp").unlink(), "missing file __0_0.distcp"),
        (lambda p: (p / MANIFEST).write_text("{"), "unreadable manifest.json"),
        (lambda p: (p / MANIFEST).unlink(), "unreadable manifest.json"),
    ],
)
def test_verify_names_what_is_wrong(tmp_path, damage, reason):
    path = make_checkpoint(tmp_path, 1)
    damage(path)
    assert reason in verify(path)


def test_verify_requires_the_named_files(tmp_path):
    path = make_checkpoint(tmp_path, 1)
    (path / MANIFEST).write_text(json.dumps({"step": 1, "files": {}}))
    assert verify(path, required=(".metadata",)) == "manifest lists no .metadata file"


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ([], "a manifest is a JSON object"),
        ({"files": {}}, "field 'step'"),
        ({"step": -1, "files": {}}, "field 'step'"),
        ({"step": 1}, "field 'files'"),
        ({"step": 1, "files": {".metadata": "abc"}}, "field 'files..metadata'"),
        ({"step": 1, "files": {}, "tokens": "7"}, "field 'tokens'"),
        ({"step": 1, "files": {}, "model_config": [1]}, "field 'model_config'"),
        ({"step": 1, "files": {}, "rank_states": {}}, "field 'rank_states'"),
    ],
)
def test_read_manifest_names_the_file_and_the_field(tmp_path, manifest, field):
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST) in str(err.value) and field in str(err.value)


def test_write_manifest_refuses_a_bad_field_and_leaves_no_file(tmp_path):
    with pytest.raises(ManifestError, match="field 'tokens'"):
        write_manifest(tmp_path, {"step": 1, "tokens": 1.5}, {})
    assert list(tmp_path.iterdir()) == []


def test_an_old_manifest_without_model_config_is_a_clear_error(tmp_path):
    path = make_checkpoint(tmp_path, 2)
    with pytest.raises(ManifestError, match="no field 'model_config'.*before manifests"):
        manifest_model_config(read_manifest(path), path)


def _two_rank_files(tmp: Path) -> None:
    tmp.mkdir(parents=True)
    for name in (".metadata", "__0_0.distcp", "__1_0.distcp", "__1_1.distcp"):
        (tmp / name).write_bytes(name.encode() * 10)


def test_each_rank_hashes_the_files_it_wrote_and_rank_0_merges_them(tmp_path):
    tmp = tmp_dir(tmp_path / step_dir_name(4))
    _two_rank_files(tmp)
    assert sorted(rank_files(tmp, 0, 2)) == [".metadata", "__0_0.distcp"]
    assert sorted(rank_files(tmp, 1, 2)) == ["__1_0.distcp", "__1_1.distcp"]
    assert sorted(rank_files(tmp, 0, 1)) == sorted(hash_files(tmp))  # one rank: every file
    assert [owner("__5_0.distcp", w) for w in (8, 4, 1)] == [5, 1, 0]
    write_rank_hashes(tmp, 1, rank_files(tmp, 1, 2))
    (tmp / ".rank_00002.hashes.json.x1y2.tmp").write_text("{")  # another rank, mid-write
    assert sorted(rank_files(tmp, 0, 1)) == [  # neither rank file is hashed
        ".metadata", "__0_0.distcp", "__1_0.distcp", "__1_1.distcp",
    ]  # fmt: skip
    (tmp / ".rank_00002.hashes.json.x1y2.tmp").unlink()
    merged = {**rank_files(tmp, 0, 2), **read_rank_hashes(tmp, 2, timeout=1)}
    assert merged == hash_files(tmp) and not list(tmp.glob("*.hashes.json"))  # removed


def test_a_missing_rank_hash_file_names_the_rank(tmp_path):
    tmp = tmp_dir(tmp_path / step_dir_name(4))
    _two_rank_files(tmp)
    write_rank_hashes(tmp, 1, rank_files(tmp, 1, 3))
    with pytest.raises(ManifestError, match=r"rank_00002\.hashes\.json: rank 2 of 3 wrote no"):
        read_rank_hashes(tmp, 3, timeout=0.1)


@pytest.mark.parametrize(
    "content", ["{", '{"rank": 2, "files": {}}', '{"rank": 1, "files": {"a": "xyz"}}']
)
def test_a_corrupt_rank_hash_file_is_an_error_naming_it(tmp_path, content):
    tmp = tmp_dir(tmp_path / step_dir_name(4))
    _two_rank_files(tmp)
    (tmp / "rank_00001.hashes.json").write_text(content)
    with pytest.raises(ManifestError, match=r"rank_00001\.hashes\.json"):
        read_rank_hashes(tmp, 2, timeout=1)


def test_verify_checks_a_rank_s_share_and_the_cheap_check_reads_nothing(tmp_path, monkeypatch):
    import llm_formats.checkpoint as formats

    tmp = tmp_dir(tmp_path / step_dir_name(4))
    _two_rank_files(tmp)
    write_manifest(tmp, {"step": 4}, hash_files(tmp))
    path = finalize(tmp, tmp_path / step_dir_name(4))
    assert read_manifest(path)["sizes"]["__1_0.distcp"] == len(b"__1_0.distcp" * 10)
    (path / "__1_0.distcp").write_bytes(b"X" + (path / "__1_0.distcp").read_bytes()[1:])
    assert verify(path, rank=0, world=2) is None  # not rank 0's file
    assert verify(path, rank=1, world=2) == "sha256 mismatch for __1_0.distcp"
    hashed = []
    monkeypatch.setattr(formats, "sha256_file", lambda p: hashed.append(p) or "")
    assert verify(path, hashes=False) is None and hashed == []  # same size: passes unread
    (path / "__1_1.distcp").write_bytes(b"short")
    assert verify(path, hashes=False) == (
        "size mismatch for __1_1.distcp: 5 bytes, the manifest says 120"
    )


def test_a_manifest_without_sizes_still_verifies(tmp_path):
    """Checkpoints written before manifests recorded sizes: hashes of every file only."""
    path = make_checkpoint(tmp_path, 1)
    manifest = read_manifest(path)
    del manifest["sizes"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert verify(path, (".metadata",)) is None and verify(path, hashes=False) is None
    (path / "__0_0.distcp").write_bytes(b"changed")
    assert verify(path) == "sha256 mismatch for __0_0.distcp"
