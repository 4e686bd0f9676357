"""The run lock never writes through a symbolic link planted at its path."""

import pytest

from llm_formats import rundir as layout
from pretrain.rundir import RunError, RunLock


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_at_the_lock_path_is_refused_not_written_through(tmp_path, dangling):
    outside = tmp_path / "outside.txt"
    if not dangling:
        outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / layout.LOCK).symlink_to(outside)
    with pytest.raises(RunError, match=rf"{layout.LOCK} is a symbolic link"), RunLock(run):
        pass
    assert outside.read_text() == "precious" if not dangling else not outside.exists()


def test_the_lock_is_taken_and_records_its_holder(tmp_path):
    import json
    import os

    with RunLock(tmp_path):
        assert json.loads((tmp_path / layout.LOCK).read_text())["pid"] == os.getpid()
