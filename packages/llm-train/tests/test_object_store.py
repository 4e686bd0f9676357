"""Checkpoints in object storage, against moto's S3 server on 127.0.0.1 (the ``s3`` fixture)."""

import json

import pytest
import torch

from llm_train import object_store
from llm_train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_tmp,
    save_checkpoint,
    verify_checkpoint,
)
from llm_train.config import TrainConfig


def _save(toy, directory, step, seed=0, keep=0):
    model, optimizer = toy.trained(seed)
    path = save_checkpoint(
        directory, step, model, optimizer, manifest={"tokens": step}, rank_state={"p": step},
        keep=keep,
    )  # fmt: skip
    return path, model


def test_save_list_verify_load_round_trip(toy, s3):
    directory = f"{s3.url}/run/checkpoints"
    path, model = _save(toy, directory, step=3)
    assert path == f"{directory}/step_000003"
    fs, _ = object_store.filesystem(path)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3.bucket}/run/checkpoints/step_000003"))
    assert names == [".metadata", "__0_0.distcp", "manifest.json"]
    manifest = json.loads(fs.cat_file(f"{s3.bucket}/run/checkpoints/step_000003/manifest.json"))
    assert manifest["step"] == 3 and set(manifest["files"]) == {".metadata", "__0_0.distcp"}
    assert manifest["sizes"]["__0_0.distcp"] == fs.size(f"{path}/__0_0.distcp")
    assert verify_checkpoint(path) is None
    assert latest_checkpoint(directory) == path
    fresh, fresh_opt = toy.trained(1)
    assert load_checkpoint(path, fresh, fresh_opt)["step"] == 3
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert "testing" not in json.dumps(manifest)  # no credential reaches the manifest


def test_corrupt_or_uncommitted_checkpoints_are_skipped(toy, s3):
    directory = f"{s3.url}/ckpt"
    good, _ = _save(toy, directory, step=1)
    bad, _ = _save(toy, directory, step=2)
    fs, _ = object_store.filesystem(bad)
    blob = bytearray(fs.cat_file(f"{bad}/__0_0.distcp"))
    blob[-1] ^= 1  # same size, one flipped bit: only the hash finds it
    fs.pipe_file(f"{bad}/__0_0.distcp", bytes(blob))
    fs.pipe_file(f"{directory}/step_000003/__0_0.distcp", b"half an upload")  # no manifest
    assert "sha256 mismatch for __0_0.distcp" in verify_checkpoint(bad)
    assert "unreadable manifest.json" in verify_checkpoint(f"{directory}/step_000003")
    assert list_checkpoints(directory) == [f"{directory}/step_00000{i}" for i in (3, 2, 1)]
    assert latest_checkpoint(directory) == good
    remove_stale_tmp(directory)  # the prefix without a manifest goes, the others stay
    assert list_checkpoints(directory) == [bad, good]


def test_pruning_keeps_the_newest(toy, s3):
    directory = f"{s3.url}/ckpt"
    for step in (1, 2, 3):
        _save(toy, directory, step=step, keep=2)
    assert list_checkpoints(directory) == [f"{directory}/step_00000{i}" for i in (3, 2)]


def test_saving_a_step_again_replaces_it(toy, s3):
    directory = f"{s3.url}/ckpt"
    _save(toy, directory, step=1, seed=0)
    path, model = _save(toy, directory, step=1, seed=5)
    assert verify_checkpoint(path) is None
    fresh, fresh_opt = toy.trained(1)
    load_checkpoint(path, fresh, fresh_opt)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )


def test_endpoint_lost_mid_upload_fails_naming_the_object_and_commits_nothing(toy, s3, monkeypatch):
    from torch.distributed.checkpoint import fsspec_filesystem

    directory = f"{s3.url}/ckpt"
    good, _ = _save(toy, directory, step=1)
    original = fsspec_filesystem._FileSystem.create_stream

    def drop_on_tensor_file(self, path, mode):  # the connection goes as the tensors upload
        if str(path).endswith(".distcp") and "w" in mode:
            s3.stop()
        return original(self, path, mode)

    monkeypatch.setattr(fsspec_filesystem._FileSystem, "create_stream", drop_on_tensor_file)
    with pytest.raises(CheckpointError, match="step_000002") as err:
        _save(toy, directory, step=2)
    assert "earlier checkpoints are untouched" in str(err.value)
    monkeypatch.setattr(fsspec_filesystem._FileSystem, "create_stream", original)
    s3.start()
    assert latest_checkpoint(directory) == good  # step 2 has no manifest: never taken as done


def test_endpoint_lost_before_the_manifest_commits_nothing(toy, s3, monkeypatch):
    directory = f"{s3.url}/ckpt"
    good, _ = _save(toy, directory, step=1)
    original = object_store.write_manifest

    def drop_then_write(*args, **kwargs):
        s3.stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(object_store, "write_manifest", drop_then_write)
    with pytest.raises(CheckpointError, match="step_000002/manifest.json|step_000002"):
        _save(toy, directory, step=2)
    s3.start()
    assert latest_checkpoint(directory) == good


@pytest.mark.trains
def test_run_resumed_from_s3_equals_an_uninterrupted_one(toy, s3, tmp_path):
    from llm_train.metrics import read_metrics
    from llm_train.trainer import Trainer

    def run(name, callbacks=(), async_checkpoint=False):
        config = TrainConfig(
            steps=6, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1, checkpoint_every=3,
            keep_checkpoints=1, checkpoint_dir=f"{s3.url}/{name}/checkpoints",
            async_checkpoint=async_checkpoint,
        )  # fmt: skip
        torch.manual_seed(123)
        trainer = Trainer(toy.Model(), toy.Loader(), config, tmp_path / name, callbacks=callbacks)
        trainer.fit()
        return trainer

    straight = run("straight")
    with pytest.raises(toy.Crash):
        run("resumed", callbacks=[toy.CrashAt(5)], async_checkpoint=True)
    resumed = run("resumed")
    assert resumed.step == 6 and resumed.checkpoint == f"{s3.url}/resumed/checkpoints/step_000006"
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")] == losses
    assert list_checkpoints(f"{s3.url}/resumed/checkpoints") == [resumed.checkpoint]
    assert not (tmp_path / "resumed" / "checkpoints").exists()  # nothing went to local disk
    run_json = (tmp_path / "resumed" / "run.json").read_text()
    assert "testing" not in run_json and "127.0.0.1" not in run_json  # no credential/endpoint


def test_an_upload_cut_once_is_retried_and_the_checkpoint_verifies(toy, s3, s3_cut):
    directory = f"{s3.url}/ckpt"
    s3_cut.fail("step_000001/__0_0.distcp", times=1)
    s3_cut.fail("step_000001/manifest.json", times=1)
    path, model = _save(toy, directory, step=1)
    assert len(s3_cut.cut) == 2  # both cut mid-body, both retried
    assert verify_checkpoint(path) is None and latest_checkpoint(directory) == path


def test_an_upload_cut_every_time_names_the_object_and_commits_nothing(toy, s3, s3_cut):
    directory = f"{s3.url}/ckpt"
    good, _ = _save(toy, directory, step=1)
    s3_cut.fail("step_000002/__0_0.distcp", times=100)
    with pytest.raises(CheckpointError, match=f"{s3.bucket}/ckpt/step_000002/__0_0.distcp"):
        _save(toy, directory, step=2)
    fs, _ = object_store.filesystem(directory)
    assert not fs.exists(f"{s3.bucket}/ckpt/step_000002/manifest.json")
    s3_cut.rules.clear()
    assert latest_checkpoint(directory) == good  # what was uploaded of step 2 is no checkpoint
    path, _ = _save(toy, directory, step=2)  # the next save writes it whole
    assert verify_checkpoint(path) is None and latest_checkpoint(directory) == path


def test_no_credential_reaches_a_file_or_log(toy, s3, s3_secret, tmp_path):
    from llm_train.trainer import Trainer

    def fit(steps):
        config = TrainConfig(
            steps=steps, lr=1e-2, warmup_steps=1, precision="fp32", log_every=1,
            checkpoint_every=2, checkpoint_dir=f"{s3.url}/run/checkpoints",
        )  # fmt: skip
        trainer = Trainer(toy.Model(), toy.Loader(), config, tmp_path / "run")
        trainer.fit()
        return trainer

    fit(2)
    assert fit(4).checkpoint == f"{s3.url}/run/checkpoints/step_000004"  # saved, resumed, saved
    assert s3_secret.log.stat().st_size > 0  # the clients' debug records were captured
    assert s3_secret.holders() == []
