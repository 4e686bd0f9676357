"""llm_formats.atomic: whole files or the old file, never half of one."""

import hashlib
import json
import os

import pytest

from llm_formats import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file


def test_writes_replace_the_file_and_leave_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert path.read_text().endswith("\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})  # not serialisable: raises before writing
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails inside the write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # over several chunks
    path = atomic_write_bytes(tmp_path / "blob", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    """The rename replaces a link planted at the target; the file it pointed at is untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.json").symlink_to(outside)
    atomic_write_json(run / "stats.json", {"x": 1})
    assert outside.read_text() == "precious"
    assert not (run / "stats.json").is_symlink() and json.loads((run / "stats.json").read_text())


def test_open_append_refuses_a_symlink_and_appends_otherwise(tmp_path):
    from llm_formats.atomic import open_append

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(OSError, match=r"metrics\.jsonl is a symbolic link"):
        open_append(tmp_path / "metrics.jsonl")
    assert outside.read_text() == "precious"
    for text in ("a\n", "b\n"):
        with open_append(tmp_path / "log.txt") as f:
            f.write(text)
    assert (tmp_path / "log.txt").read_text() == "a\nb\n"
