import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

from llm_train.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from llm_train.config import TrainConfig, trajectory_changes
from llm_train.metrics import read_metrics
from llm_train.schedule import lr_at
from llm_train.trainer import Trainer


class CountTokens:
    """Stands in for an eval callback: toggles eval mode and reports a number."""

    def __init__(self, every: int) -> None:
        self.every, self.calls = every, []

    def __call__(self, step, model):
        model.eval()
        self.calls.append(step)
        return {"eval/step_x2": 2.0 * step}


def _config(**overrides):
    base = dict(
        steps=10, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1, checkpoint_every=5,
        keep_checkpoints=2, spike_k=3.0, spike_window=3, grad_accum_steps=2,
    )  # fmt: skip
    return TrainConfig(**(base | overrides))


def _run(toy, run_dir, callbacks=(), **overrides):
    torch.manual_seed(123)  # init; the trainer reseeds (or restores RNG) before training
    trainer = Trainer(toy.Model(), toy.Loader(), _config(**overrides), run_dir, callbacks=callbacks)
    return trainer, trainer.fit()


@pytest.mark.trains
def test_resumed_run_matches_uninterrupted_run(toy, tmp_path):
    straight, final = _run(toy, tmp_path / "straight")
    with pytest.raises(toy.Crash):
        _run(toy, tmp_path / "resumed", callbacks=[toy.CrashAt(7)])
    # Step 7 crashed in its callback, before its metrics line was written.
    crashed = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in crashed] == [1, 2, 3, 4, 5, 6]
    resumed, final_resumed = _run(toy, tmp_path / "resumed")
    # 7 optimizer steps ran before the crash, but only step 5 was checkpointed: 6..10 rerun.
    assert resumed.step == 10 and resumed.tokens == straight.tokens == 10 * 2 * 4 * 8
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    records = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 11))  # steps 6, 7 not duplicated
    assert [r["loss"] for r in records] == losses
    assert final_resumed["loss"] == final["loss"]
    assert losses[-1] < losses[0] - 0.3  # it learned: 3.62 -> 2.61 on every CPU kernel tried
    again, final_again = _run(toy, tmp_path / "straight")  # finished run: nothing left to do
    assert again.step == 10 and final_again["loss"] == final["loss"]
    assert len(read_metrics(tmp_path / "straight" / "metrics.jsonl")) == 10
    checkpoints = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert checkpoints == ["step_000005", "step_000010"]


def test_metrics_jsonl_and_callbacks(toy, tmp_path):
    counter = CountTokens(every=4)
    trainer, final = _run(
        toy, tmp_path, callbacks=[counter], log_every=3, peak_flops=1e9, steps=10, spike_k=0
    )
    run_info = json.loads((tmp_path / "run.json").read_text())
    assert run_info["config"]["log_every"] == 3 and "torch" in run_info["versions"]
    assert counter.calls == [4, 8, 10]  # every 4 steps and at the end
    assert trainer.model.training  # put back in train mode
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 3, 4, 6, 8, 9, 10]  # 1, log_every=3, evals, last
    first = records[1]
    assert {"loss", "ce", "z_loss", "grad_norm", "lr", "tokens", "tokens_per_s", "mfu"} <= set(
        first
    )
    assert first["tokens"] == 3 * 2 * 4 * 8 and first["skipped_total"] == 0
    assert first["mfu"] == pytest.approx(
        first["tokens_per_s"] * trainer.model.flops_per_token(8) / 1e9
    )
    assert first["hfu"] == first["mfu"]  # no recomputation without activation checkpointing
    assert first["tokens_per_s_per_device"] == first["tokens_per_s"]  # one device
    assert records[2]["eval/step_x2"] == 8.0 and "tokens_per_s" not in records[2]
    assert records[-1]["eval/step_x2"] == 20.0 and final["eval/step_x2"] == 20.0
    assert records[-2]["lr"] == pytest.approx(
        1e-2 * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 6 / 7)).item()))
    )  # step index 8: decay over indices 2..9
    assert records[-1]["lr"] == pytest.approx(1e-3)  # the last update uses min_lr  # fmt: skip


def test_tensorboard_mirror_of_a_run(toy, tmp_path):
    pytest.importorskip("tensorboard")
    config = _config(steps=2, checkpoint_every=0)
    Trainer(toy.Model(), toy.Loader(), config, tmp_path, tensorboard_dir=tmp_path / "tb").fit()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_nan_skipped_and_counted_in_trainer(toy, tmp_path):
    torch.manual_seed(0)
    model = toy.Model()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    config = _config(steps=3, checkpoint_every=0, max_consecutive_skips=5)
    final = Trainer(model, toy.Loader(), config, tmp_path).fit()
    assert final["skipped_total"] == 3.0 and final["loss"] != final["loss"]
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [None] * 3
    config = _config(steps=5, checkpoint_every=0, max_consecutive_skips=2)
    with pytest.raises(RuntimeError, match="2 updates skipped in a row"):
        Trainer(model, toy.Loader(), config, tmp_path / "b").fit()


def _corrupt(checkpoint: Path) -> None:
    data = next(checkpoint.glob("*.distcp"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def test_every_checkpoint_corrupt_is_an_error_not_a_fresh_start(toy, tmp_path):
    _run(toy, tmp_path)
    for checkpoint in list_checkpoints(tmp_path / "checkpoints"):
        _corrupt(checkpoint)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=r"step_000010.*sha256 mismatch.*step_000005"):
        _run(toy, tmp_path, steps=15)
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing truncated
    fresh, _ = _run(toy, tmp_path / "other")  # no checkpoints at all: a fresh run, as before
    assert fresh.step == 10


def test_raising_steps_continues_and_says_what_the_schedule_does(toy, tmp_path, caplog):
    _run(toy, tmp_path)
    with caplog.at_level(logging.INFO, logger="llm_train.trainer"):
        longer, _ = _run(toy, tmp_path, steps=15)
    assert longer.step == 15 and "resumed from" in caplog.text
    assert "steps changed from 10 to 15" in caplog.text and "recomputed" in caplog.text
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 16))  # every step exactly once
    assert records[10]["lr"] == pytest.approx(lr_at(10, _config(steps=15)))


def test_resuming_past_the_configured_steps_is_an_error(toy, tmp_path):
    _run(toy, tmp_path)
    with pytest.raises(ValueError, match=r"step 10.*steps=5"):
        _run(toy, tmp_path, steps=5)


def test_resume_warns_about_settings_that_change_the_updates(toy, tmp_path, caplog):
    _run(toy, tmp_path, steps=5)
    with caplog.at_level(logging.WARNING, logger="llm_train.trainer"):
        _run(toy, tmp_path, steps=5, log_every=2, checkpoint_every=3)  # runtime only: quiet
    assert not [r for r in caplog.records if r.name == "llm_train.trainer"]
    with caplog.at_level(logging.WARNING, logger="llm_train.trainer"):
        _run(toy, tmp_path, steps=5, lr=2e-2)
    assert "lr: 0.01 -> 0.02" in caplog.text


def test_trajectory_changes_ignore_runtime_fields():
    recorded = json.loads(json.dumps(dataclasses.asdict(_config())))
    assert trajectory_changes(recorded, _config(log_every=7, steps=99, compile=True)) == {}
    assert trajectory_changes(recorded, _config(betas=(0.8, 0.95))) == {
        "betas": ([0.9, 0.95], [0.8, 0.95])
    }
    # A record from before a field existed: compared as that field's default.
    older = {k: v for k, v in recorded.items() if k not in ("optimizer", "anneal_fraction")}
    assert trajectory_changes(older, _config()) == {}
    assert trajectory_changes(older, _config(optimizer="lion")) == {"optimizer": ("adamw", "lion")}


class Probe:
    """Records, at each step's callbacks, how many host reads llm_train made so far."""

    every = 1

    def __init__(self, calls, poison_at=0, report_at=0):
        self.calls, self.at, self.poison_at, self.report_at = calls, {}, poison_at, report_at

    def __call__(self, step, model):
        self.at[step] = len(self.calls)
        if step == self.poison_at:
            with torch.no_grad():
                model.head.weight[0, 0] = float("nan")
        return {"eval/x": 1.0} if step == self.report_at else {}


def test_steps_that_do_not_log_do_not_sync(toy, tmp_path, host_reads):
    calls = host_reads
    probe = Probe(calls)
    config = _config(steps=4, log_every=4, checkpoint_every=0, spike_k=0, nan_policy="stop")
    Trainer(toy.Model(), toy.Loader(), config, tmp_path, callbacks=[probe]).fit()
    assert probe.at[3] == probe.at[2]  # step 3: no log, no checkpoint, no eval result
    assert probe.at[2] > 0 and len(calls) > probe.at[3]  # steps 1 and 4 do read


def test_stop_policy_checks_unlogged_steps_at_the_next_sync(toy, tmp_path):
    probe = Probe([], poison_at=1, report_at=3)
    config = _config(steps=6, log_every=6, checkpoint_every=0, spike_k=0, nan_policy="stop")
    trainer = Trainer(toy.Model(), toy.Loader(), config, tmp_path, callbacks=[probe])
    with pytest.raises(FloatingPointError, match="at step 2"):
        trainer.fit()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]
    assert not list_checkpoints(tmp_path / "checkpoints")


def test_hfu_counts_the_recomputed_forward(toy, tmp_path):
    _, _ = _run(toy, tmp_path, activation_checkpointing=True, peak_flops=1e9, steps=3,
                log_every=1, spike_k=0)  # fmt: skip
    for record in read_metrics(tmp_path / "metrics.jsonl"):
        assert record["hfu"] == pytest.approx(record["mfu"] * 4 / 3)  # 8N / 6N


def test_async_checkpoints_resume_like_sync_ones(toy, tmp_path):
    straight, final = _run(toy, tmp_path / "straight")
    with pytest.raises(toy.Crash):
        _run(toy, tmp_path / "resumed", callbacks=[toy.CrashAt(7)], async_checkpoint=True)
    resumed, resumed_final = _run(toy, tmp_path / "resumed", async_checkpoint=True)
    assert resumed_final["loss"] == pytest.approx(final["loss"], rel=1e-6)
    for (name, p), q in zip(resumed.model.named_parameters(), straight.model.parameters(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(p, q, msg=name)
    checkpoints = sorted((tmp_path / "resumed" / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step_000005", "step_000010"]  # no .tmp left
    assert all(verify_checkpoint(c) is None for c in checkpoints)  # hashed in the background


@pytest.mark.trains
def test_pruning_after_a_fallback_resume_keeps_a_resumable_checkpoint(toy, tmp_path):
    _run(toy, tmp_path, steps=6, checkpoint_every=2, keep_checkpoints=3)  # steps 2, 4, 6
    checkpoints = tmp_path / "checkpoints"
    _corrupt(checkpoints / "step_000006")
    resumed, _ = _run(toy, tmp_path, steps=5, checkpoint_every=2, keep_checkpoints=1)
    assert resumed.checkpoint == checkpoints / "step_000005"  # fell back to 4, saved 5
    # The corrupt newer one is left but not counted as kept; 4 and 2 are pruned. What is on
    # disk now is what a kill -9 right after the save leaves: it resumes from step 5.
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_000006", "step_000005"]
    assert verify_checkpoint(checkpoints / "step_000005") is None
    again, _ = _run(toy, tmp_path, steps=5, keep_checkpoints=1)
    assert again.step == 5 and again.checkpoint == checkpoints / "step_000005"


def test_a_stale_tmp_is_removed_when_training_starts(toy, tmp_path):
    """A save that filled the disk left ``step_N.tmp``: the next start frees it first."""
    stale = tmp_path / "checkpoints" / "step_000004.tmp"
    stale.mkdir(parents=True)
    (stale / "__0_0.distcp").write_bytes(b"\0" * 1000)
    trainer = Trainer(toy.Model(), toy.Loader(), _config(), tmp_path)
    trainer._start()  # before any step, before run.json
    assert not stale.exists()
