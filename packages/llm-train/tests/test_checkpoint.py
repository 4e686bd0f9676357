import errno
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from llm_train.checkpoint import (
    CheckpointError,
    async_save_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    verify_checkpoint,
)
from llm_train.rng import get_rng_state, set_rng_state


def _save(toy, directory, step, seed=0, keep=0):
    model, optimizer = toy.trained(seed)
    rank_state = {"loader": {"position": step}, "rng": get_rng_state()}
    path = save_checkpoint(
        directory, step, model, optimizer, manifest={"tokens": 7 * step}, rank_state=rank_state,
        keep=keep,
    )  # fmt: skip
    return path, model, optimizer


def test_round_trip_model_optimizer_manifest(toy, tmp_path):
    path, model, optimizer = _save(toy, tmp_path, step=3)
    assert path == tmp_path / "step_000003"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000003"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 3 and manifest["tokens"] == 21
    assert manifest["rank_states"][0]["loader"] == {"position": 3}
    assert ".metadata" in manifest["files"] and len(manifest["files"][".metadata"]) == 64
    assert "torch" in manifest["provenance"]["versions"]
    fresh, fresh_opt = toy.trained(1)
    loaded = load_checkpoint(path, fresh, fresh_opt)
    assert loaded["step"] == 3
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for name in ("exp_avg", "exp_avg_sq", "step"):
        for pa, pb in zip(model.parameters(), fresh.parameters(), strict=True):
            assert torch.equal(optimizer.state[pa][name], fresh_opt.state[pb][name])


def test_model_weights_load_without_an_optimizer(toy, tmp_path, monkeypatch):
    """Eval and export need the weights only: no optimizer is built (building one for eval
    allocated its state for nothing), and the model ends equal to the trained one."""
    path, model, _ = _save(toy, tmp_path, step=3)
    fresh = toy.Model()

    def no_optimizer(*args, **kwargs):
        raise AssertionError("loading model weights built an optimizer")

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", no_optimizer)
    manifest = load_model_weights(path, fresh)
    assert manifest["step"] == 3 and manifest["tokens"] == 21
    trained, loaded = model.state_dict(), fresh.state_dict()
    assert trained.keys() == loaded.keys()
    assert all(torch.equal(trained[k], loaded[k]) for k in trained)


def test_latest_skips_corrupt_partial_and_tmp(toy, tmp_path, caplog):
    _save(toy, tmp_path, step=1)
    _save(toy, tmp_path, step=2)
    newest, _, _ = _save(toy, tmp_path, step=3)
    assert latest_checkpoint(tmp_path) == newest
    data = next(newest.glob("*.distcp"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    data.write_bytes(bytes(raw))
    (tmp_path / "step_000002" / "manifest.json").unlink()  # partial: no manifest
    (tmp_path / "step_000009.tmp").mkdir()  # an interrupted save is never considered
    with caplog.at_level(logging.WARNING, logger="llm_train.checkpoint"):
        assert latest_checkpoint(tmp_path) == tmp_path / "step_000001"
    assert "sha256 mismatch" in caplog.text and "unreadable manifest.json" in caplog.text
    assert verify_checkpoint(tmp_path / "step_000001") is None
    assert latest_checkpoint(tmp_path / "missing") is None


def test_keep_prunes_oldest_and_stale_tmp(toy, tmp_path):
    (tmp_path / "step_000000.tmp").mkdir()
    for step in (1, 2, 3):
        _save(toy, tmp_path, step=step, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002", "step_000003"]


def test_rng_state_round_trip():
    import random

    state = json.loads(json.dumps(get_rng_state()))  # survives JSON
    expected = (torch.rand(3), random.random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_symlinks_planted_at_tmp_paths_are_removed_not_followed(toy, tmp_path):
    """A link at a stale ``step_N.tmp`` (or the one being written) is unlinked: ``rmtree`` or
    DCP writing through it would delete or overwrite files outside the run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "step_000000.tmp").symlink_to(outside)  # a stale one
    (ckpts / "step_000001.tmp").symlink_to(outside)  # the path this save writes
    (ckpts / "step_000002.tmp").symlink_to(tmp_path / "missing")  # dangling
    path, _, _ = _save(toy, ckpts, step=1)
    assert verify_checkpoint(path) is None
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    path, _, _ = _save(toy, ckpts, step=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000001", "step_000002"]


def test_prune_counts_only_verified_checkpoints_and_keeps_the_new_one(toy, tmp_path):
    for step in (1, 2, 4):
        _save(toy, tmp_path, step=step)
    _corrupt_file(tmp_path / "step_000004")
    _save(toy, tmp_path, step=3, keep=1)  # the newest valid one; 4 is corrupt and newer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000003", "step_000004"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step_000003"


def test_prune_deletes_nothing_when_the_new_checkpoint_does_not_verify(toy, tmp_path, monkeypatch):
    import llm_train.checkpoint as checkpoint

    for step in (1, 2):
        _save(toy, tmp_path, step=step)
    real = checkpoint._intact  # what pruning checks (presence and sizes, not hashes)

    def intact(path):
        return "corrupt" if Path(path).name == "step_000003" else real(path)

    monkeypatch.setattr(checkpoint, "_intact", intact)
    _save(toy, tmp_path, step=3, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000001", "step_000002",
                                                          "step_000003"]  # fmt: skip


def _corrupt_file(checkpoint) -> None:
    data = next(checkpoint.glob("*.distcp"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def _disk_full_after(monkeypatch, nbytes: int) -> None:
    """DCP's writer writes ``nbytes`` of the first tensor file, then the disk is full."""
    import torch.distributed.checkpoint.filesystem as fs

    def write_item(transforms, stream, *args, **kwargs):
        stream.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs, "_write_item", write_item)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("save", [save_checkpoint, async_save_checkpoint])
def test_disk_full_names_the_path_and_leaves_no_tmp(toy, tmp_path, monkeypatch, save):
    _save(toy, tmp_path, step=1)
    before = _snapshot(tmp_path)
    _disk_full_after(monkeypatch, 100)
    model, optimizer = toy.trained(0)
    with pytest.raises(CheckpointError) as failed:
        saved = save(tmp_path, 2, model, optimizer, manifest={}, rank_state={})
        saved.wait()  # the asynchronous save fails in its writer thread
    assert str(tmp_path / "step_000002.tmp") in str(failed.value)
    assert "No space left on device" in str(failed.value)
    assert _snapshot(tmp_path) == before  # no .tmp; the earlier checkpoint untouched
    assert latest_checkpoint(tmp_path) == tmp_path / "step_000001"


def test_disk_full_on_the_manifest_removes_the_tmp(toy, tmp_path, monkeypatch):
    from llm_formats import checkpoint as formats

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(formats, "write_manifest", full)
    with pytest.raises(CheckpointError, match=r"step_000002\.tmp: \[Errno 28\] No space left"):
        _save(toy, tmp_path, step=2)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_on_a_small_tmpfs(toy, tmp_path):
    """The real thing: a 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)],
                       check=True, capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        first, model, optimizer = _save(toy, mount, step=1)
        size = sum(len(b) for b in _snapshot(first).values())
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - size // 4))  # room for a quarter
        before = _snapshot(first)
        with pytest.raises(CheckpointError, match="No space left on device") as failed:
            save_checkpoint(mount, 2, model, optimizer, manifest={}, rank_state={})
        assert str(mount / "step_000002.tmp") in str(failed.value)
        assert sorted(p.name for p in mount.iterdir()) == ["filler", "step_000001"]
        assert _snapshot(first) == before
    finally:
        subprocess.run(["umount", str(mount)], check=False)
