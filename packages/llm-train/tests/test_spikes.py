import json

import pytest
import torch

from llm_train.config import TrainConfig
from llm_train.metrics import read_metrics
from llm_train.schedule import lr_at
from llm_train.trainer import Trainer

# Every test trains the toy model and asserts where the guard fires on its losses.
pytestmark = pytest.mark.trains

# Steps take two micro-batches: step s reads batches 2s - 2 and 2s - 1. Poisoning both of step
# 7's makes its loss ~3.7 against a threshold of ~3.4 (mean + 3 std of steps 4..6).
SPIKE_AT_7 = (12, 13)


class SpikyLoader:
    """The toy loader with ``sample_ids`` on each batch and shifted labels (a loss spike) on the
    batches at ``poison``; ``seen`` lists every batch index it yields, in order."""

    def __init__(self, toy, poison=SPIKE_AT_7) -> None:
        self.inner, self.poison, self.seen = toy.Loader(batches_per_epoch=100), set(poison), []
        self.vocab, self.size = toy.vocab, self.inner.batch_size

    def __iter__(self):
        for batch in self.inner:
            index = self.inner.position - 1
            self.seen.append(index)
            if index in self.poison:
                batch["labels"] = (batch["labels"] + self.vocab // 2) % self.vocab
            ids = torch.arange(index * self.size, (index + 1) * self.size)
            yield batch | {"sample_ids": ids}

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class Snapshot:
    """Keeps a copy of the model's parameters after step ``step``."""

    every = 1

    def __init__(self, step: int) -> None:
        self.step, self.params = step, None

    def __call__(self, step, model):
        if step == self.step and self.params is None:
            self.params = [p.detach().clone() for p in model.parameters()]
        return {}


def _config(**overrides):
    base = dict(
        steps=12, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1, checkpoint_every=4,
        keep_checkpoints=2, spike_k=3.0, spike_window=3, grad_accum_steps=2,
    )  # fmt: skip
    return TrainConfig(**(base | overrides))


def _trainer(toy, run_dir, loader, callbacks=(), **overrides):
    torch.manual_seed(123)
    return Trainer(toy.Model(), loader, _config(**overrides), run_dir, callbacks=callbacks)


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "spikes.jsonl").read_text().splitlines()]


def test_rollback_reloads_the_checkpoint_and_skips_the_window(toy, tmp_path, caplog):
    loader, snapshot = SpikyLoader(toy), Snapshot(4)
    trainer = _trainer(
        toy, tmp_path, loader, [snapshot], spike_policy="rollback", spike_lr_factor=0.5
    )
    restored = []
    rollback = trainer._rollback

    def checked_rollback():
        rollback()
        restored.append((trainer.step, [p.detach().clone() for p in trainer.model.parameters()]))

    trainer._rollback = checked_rollback
    final = trainer.fit()
    # Step 7 spiked: back to the step-4 checkpoint, the loader went on from batch 14.
    assert [step for step, _ in restored] == [4]
    assert all(torch.equal(a, b) for a, b in zip(restored[0][1], snapshot.params, strict=True))
    assert loader.seen == list(range(14 + 8 * 2))  # batches 8..13 are not trained on again
    assert trainer.step == 12 and trainer.tokens == 12 * 2 * 4 * 8
    (event,) = _events(tmp_path)
    assert event["step"] == 7 and event["action"] == "rolled_back"
    assert event["policy"] == "rollback" and event["loss"] > event["threshold"]
    assert [s["step"] for s in event["window"]] == [5, 6, 7]
    batches = [b for s in event["window"] for b in s["batches"]]
    assert [b["loader"]["position"] for b in batches] == list(range(8, 14))
    assert batches[0]["sample_ids"] == [32, 33, 34, 35]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))  # each step once
    assert "dropped 2 metrics records after step 4" in caplog.text
    assert final["spikes_total"] == final["rollbacks_total"] == 1.0
    assert records[3]["lr"] == pytest.approx(lr_at(3, _config()))
    assert records[4]["lr"] == pytest.approx(0.5 * lr_at(4, _config()))  # lowered after it
    # The lowered schedule is saved: resuming for one more step keeps it.
    resumed = _trainer(toy, tmp_path, SpikyLoader(toy, ()), steps=13, spike_policy="rollback")
    assert resumed.fit()["lr"] == pytest.approx(0.5 * lr_at(12, _config(steps=13)))
    assert resumed.rollbacks_total == 1


def test_too_many_rollbacks_stop_the_run(toy, tmp_path):
    # The second spike (step 8 after the rollback: batches 20, 21) would be rollback number 2.
    loader = SpikyLoader(toy, SPIKE_AT_7 + (20, 21))
    trainer = _trainer(toy, tmp_path, loader, spike_policy="rollback", max_rollbacks=1)
    with pytest.raises(RuntimeError, match="max_rollbacks=1"):
        trainer.fit()
    assert [e["action"] for e in _events(tmp_path)] == ["rolled_back", "stopped"]
    assert trainer.rollbacks_total == 1 and trainer.spikes_total == 2


def test_log_records_the_spike_and_takes_the_update(toy, tmp_path):
    trainer = _trainer(toy, tmp_path, SpikyLoader(toy), steps=8, spike_policy="log")
    final = trainer.fit()
    (event,) = _events(tmp_path)
    assert event["step"] == 7 and event["action"] == "logged"
    assert [s["step"] for s in event["window"]] == [7]
    spike = read_metrics(tmp_path / "metrics.jsonl")[6]
    assert spike["skipped"] == 0.0 and spike["loss"] == event["loss"]
    assert final["spikes_total"] == 1.0 and final["skipped_total"] == 0.0
    assert event["loss"] not in trainer.guard.losses  # a spike does not raise the bar


@pytest.mark.parametrize(
    ("policy", "checkpoint_every"),
    [("skip", 4), ("rollback", 0)],  # no checkpoint to roll back to yet: skipped
)
def test_skip_drops_the_update_and_goes_on(toy, tmp_path, policy, checkpoint_every):
    loader = SpikyLoader(toy)
    trainer = _trainer(
        toy, tmp_path, loader, steps=8, spike_policy=policy, checkpoint_every=checkpoint_every
    )
    final = trainer.fit()
    (event,) = _events(tmp_path)
    assert event["action"] == "skipped" and event["policy"] == policy
    assert [s["step"] for s in event["window"]] == [7]
    assert read_metrics(tmp_path / "metrics.jsonl")[6]["skipped"] == 1.0
    assert loader.seen == list(range(16)) and trainer.step == 8
    assert final["spikes_total"] == final["skipped_total"] == 1.0
    assert final["rollbacks_total"] == 0.0
