"""Warm start (``TrainConfig.init_from``): a fresh run from another run's checkpoint."""

import logging

import pytest
import torch

from llm_train import TrainConfig, Trainer
from llm_train.warm_start import WarmStart, WarmStartError, config_problems, tensor_problems


def _config(**overrides) -> TrainConfig:
    base = dict(steps=4, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1, spike_k=0.0)
    return TrainConfig(**(base | overrides))


@pytest.fixture
def source(toy, tmp_path):
    """A finished 4-step toy run: its trainer and its last checkpoint."""
    torch.manual_seed(1)
    trainer = Trainer(toy.Model(), toy.Loader(), _config(weight_decay=0.3), tmp_path / "source")
    trainer.fit()
    return trainer, tmp_path / "source" / "checkpoints" / "step_000004"


def _started(toy, run_dir, **overrides) -> Trainer:
    """A trainer after its start (resume or warm start), before any step."""
    torch.manual_seed(2)  # other seeded weights than the source's
    trainer = Trainer(toy.Model(), toy.Loader(), _config(**overrides), run_dir)
    trainer._start()
    return trainer


@pytest.mark.trains
def test_weights_come_from_the_checkpoint_and_the_rest_starts_fresh(toy, source, tmp_path):
    src, path = source
    warm = _started(toy, tmp_path / "warm", init_from=str(path))
    want, got = src.model.state_dict(), warm.model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert warm.step == 0 and warm.tokens == 0 and warm.loader.state_dict()["position"] == 0
    assert not warm.optimizer.state  # fresh moments
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 2)  # warmup step 0


@pytest.mark.trains
def test_init_optimizer_restores_moments_not_the_old_settings(toy, source, tmp_path):
    src, path = source
    warm = _started(toy, tmp_path / "warm", init_from=str(path), init_optimizer=True, lr=5e-3)
    for p_src, p_warm in zip(src.model.parameters(), warm.model.parameters(), strict=True):
        want, got = src.optimizer.state[p_src], warm.optimizer.state[p_warm]
        assert torch.equal(want["exp_avg"], got["exp_avg"])
    decays = {g["weight_decay"] for g in warm.optimizer.param_groups}
    assert decays == {0.0, 0.1}  # this config's (the source used 0.3)
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3 / 2)
    assert warm.step == 0


def test_every_tensor_mismatch_in_one_error(toy, source, tmp_path):
    _, path = source
    torch.manual_seed(2)
    deeper = Trainer(toy.Model(n_layers=3, hidden=24), toy.Loader(), _config(), tmp_path / "w")
    start = WarmStart(path, problems=("model.n_layers: the source has 2, this run 3",))
    with pytest.raises(WarmStartError) as e:
        start.check(deeper.model)
    message = str(e.value)
    assert "model.n_layers: the source has 2, this run 3" in message
    assert "missing tensor blocks.2.w1.weight" in message
    shape = "blocks.0.w1.weight has shape [32, 16] in the source, the model needs [24, 16]"
    assert shape in message


def test_a_run_with_checkpoints_of_its_own_resumes_from_them(toy, source, tmp_path, caplog):
    src, path = source
    with caplog.at_level(logging.INFO):  # the source run itself, "warm started" from itself
        again = _started(toy, tmp_path / "source", init_from=str(tmp_path / "elsewhere"))
    assert again.step == 4 and "init_from" in caplog.text and "is not read" in caplog.text


def test_problem_lists_name_each_field_and_tensor():
    assert config_problems({"d_model": 64, "n_layers": 2}, {"d_model": 32, "n_layers": 2}) == [
        "model.d_model: the source has 32, this run 64"
    ]
    assert tensor_problems({"a": (2, 3), "b": (1,)}, {"a": (3, 2), "c": (1,)}) == [
        "missing tensor b",
        "unexpected tensor c",
        "a has shape [3, 2] in the source, the model needs [2, 3]",
    ]


def test_init_optimizer_needs_init_from():
    with pytest.raises(ValueError, match="init_optimizer"):
        TrainConfig(steps=1, init_optimizer=True)
