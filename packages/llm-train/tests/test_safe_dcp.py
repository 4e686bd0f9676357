"""A crafted checkpoint (its manifest re-hashed, as whoever ships one would) runs no code."""

import builtins
import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict

from llm_formats import checkpoint as formats
from llm_train.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from llm_train.config import TrainConfig
from llm_train.optimizer import build_optimizer
from llm_train.safe_dcp import UnsafeCheckpointError, read_metadata
from llm_train.trainer import Trainer


class _Payload:
    """Unpickles to ``call(*args)``: what an attacker's pickle does, made harmless (a marker)."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _payloads(marker):
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


def _model_optimizer(toy):
    torch.manual_seed(0)
    model = toy.Model()
    optimizer = build_optimizer(model, TrainConfig(steps=1, lr=1e-2))
    model(**toy.Loader().batch(0, 0))["loss"].backward()
    optimizer.step()
    return model, optimizer


def _rehash(path):
    """Rewrite the manifest's sha256 of every file, as a shipped checkpoint would carry."""
    fields = {k: v for k, v in formats.read_manifest(path).items() if k != "files"}
    formats.write_manifest(path, fields, formats.hash_files(path))
    assert formats.verify(path, required=(".metadata",)) is None


def _poisoned_metadata(toy, directory, payload):
    """A real checkpoint whose ``.metadata`` also unpickles ``payload`` (then loads normally)."""
    model, optimizer = _model_optimizer(toy)
    path = save_checkpoint(directory, 1, model, optimizer, manifest={}, rank_state={})
    metadata = read_metadata(path)
    metadata.storage_meta.modules = [payload]  # any field will do; this one DCP never reads
    (path / ".metadata").write_bytes(pickle.dumps(metadata))
    _rehash(path)
    return path


@pytest.mark.parametrize("name", ["os.system", "builtins.exec"])  # os.system pickles as posix.
@pytest.mark.parametrize("reader", ["load_checkpoint", "load_model_weights", "read_metadata"])
def test_crafted_metadata_is_refused_and_runs_nothing(toy, tmp_path, name, reader):
    marker = tmp_path / "MARKER"
    path = _poisoned_metadata(toy, tmp_path / "ckpt", _payloads(marker)[name])
    model, optimizer = _model_optimizer(toy)
    call = {
        "load_checkpoint": lambda: load_checkpoint(path, model, optimizer),
        "load_model_weights": lambda: load_model_weights(path, model),
        "read_metadata": lambda: read_metadata(path),
    }[reader]
    refused = f"{os.system.__module__}.system" if name == "os.system" else name
    refusal = rf"\.metadata: refusing to load global {refused}"
    with pytest.raises(UnsafeCheckpointError, match=refusal):
        call()
    assert not marker.exists()


def test_crafted_optimizer_value_is_refused_and_runs_nothing(toy, tmp_path):
    """DCP loads non-tensor values (``lr``, ``betas``) with ``torch.load(weights_only=False)``."""
    marker = tmp_path / "MARKER"
    model, optimizer = _model_optimizer(toy)
    path = save_checkpoint(tmp_path / "ckpt", 1, model, optimizer, manifest={}, rank_state={})
    model_sd, optim_sd = get_state_dict(model, optimizer)
    optim_sd["param_groups"][0]["lr"] = _payloads(marker)["os.system"]
    for f in path.glob("*.distcp"):
        f.unlink()
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path, no_dist=True)
    _rehash(path)
    fresh, fresh_opt = _model_optimizer(toy)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load value 'optim\.param_groups"):
        load_checkpoint(path, fresh, fresh_opt)
    assert not marker.exists()


def test_resume_from_a_crafted_checkpoint_is_refused(toy, tmp_path):
    marker = tmp_path / "MARKER"
    config = TrainConfig(steps=2, lr=1e-2, precision="fp32", checkpoint_every=1, log_every=1)
    Trainer(toy.Model(), toy.Loader(), config, tmp_path / "run").fit()
    path = formats.step_dirs(tmp_path / "run" / "checkpoints")[0]
    metadata = read_metadata(path)
    metadata.storage_meta.modules = [_payloads(marker)["os.system"]]
    (path / ".metadata").write_bytes(pickle.dumps(metadata))
    _rehash(path)
    config = TrainConfig(steps=3, lr=1e-2, precision="fp32", checkpoint_every=1, log_every=1)
    refusal = r"\.metadata: refusing to load global \w+\.system"
    with pytest.raises(UnsafeCheckpointError, match=refusal):
        Trainer(toy.Model(), toy.Loader(), config, tmp_path / "run").fit()
    assert not marker.exists()


def test_real_checkpoint_metadata_names_only_allowed_globals(toy, tmp_path):
    """The allow-list covers what DCP writes (fp32 and bf16 tensors, optimizer values)."""
    model, optimizer = _model_optimizer(toy)
    model.head.to(torch.bfloat16)
    path = save_checkpoint(tmp_path, 1, model, optimizer, manifest={}, rank_state={})
    assert {"model.head.weight", "optim.param_groups.0.lr"} <= set(
        read_metadata(path).state_dict_metadata
    )
    fresh, fresh_opt = _model_optimizer(toy)
    fresh.head.to(torch.bfloat16)
    load_checkpoint(path, fresh, fresh_opt)
    assert torch.equal(fresh.head.weight, model.head.weight)
