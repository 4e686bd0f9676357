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
    read_manifest,
    stale_tmp_dirs,
    step_dir_name,
    step_dirs,
    step_of,
    tmp_dir,
    verify,
    write_manifest,
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
