"""llm_formats.rundir: one name per path of a run directory."""

from pathlib import Path, PurePosixPath

from llm_formats import rundir


def _names() -> dict[str, str]:
    return {k: getattr(rundir, k) for k in rundir.__all__ if k.isupper()}


def test_every_path_is_relative_and_named_once():
    names = _names()
    assert len(set(names.values())) == len(names)
    for key, value in names.items():
        assert not PurePosixPath(value).is_absolute() and ".." not in value, key


def test_nested_paths_live_under_their_folder():
    assert rundir.HELDOUT.startswith(rundir.SHARDS + "/")
    assert rundir.SHARD_STATS.startswith(rundir.SHARDS + "/")
    assert rundir.TRAINING_RECORD.startswith(rundir.CHECKPOINTS + "/")
    assert rundir.EVAL_RESULTS.startswith(rundir.EVAL_DIR + "/")


def test_run_dir_joins_root_and_name(tmp_path):
    run = rundir.run_dir(tmp_path, "sample")
    assert run == tmp_path / "sample"
    assert run / rundir.HELDOUT == Path(tmp_path, "sample", "shards", "heldout.jsonl")
