"""SIGTERM mid-run: every rank finishes its step, checkpoints it and exits 128+15; the rerun
loses nothing (1 process, and 2 gloo ranks under torchrun)."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_formats import checkpoint as formats
from llm_train.metrics import read_metrics
from llm_train.stop import StopSignals, TrainingStopped

SCRIPT = Path(__file__).with_name("stop_run.py")
BIN = Path(sys.executable).parent
STEPS = 40


def _stop_run():
    spec = importlib.util.spec_from_file_location("stop_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    return [r["step"] for r in read_metrics(path)] if path.exists() else []


def _terminate_mid_run(command: list[str], run: Path) -> tuple[subprocess.Popen, str]:
    """Start ``command``, SIGTERM it once a few steps are logged; (process, its output)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while max(_logged_steps(run), default=0) < 3:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no step logged in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    return proc, out


def _check_stopped(run: Path, ranks: int) -> int:
    """The newest checkpoint covers every logged step and is whole; its step."""
    newest = formats.step_dirs(run / "checkpoints")[0]
    assert formats.verify(newest, required=(".metadata",)) is None
    manifest = formats.read_manifest(newest)
    assert manifest["step"] >= max(_logged_steps(run)) and manifest["step"] < STEPS
    assert len(manifest["rank_states"]) == ranks  # every rank's state saved, at one step
    assert not formats.stale_tmp_dirs(run / "checkpoints")
    return manifest["step"]


@pytest.mark.trains
def test_sigterm_checkpoints_the_step_and_the_rerun_matches(tmp_path):
    stop_run = _stop_run()
    reference = stop_run.train(tmp_path / "straight", STEPS)
    run = tmp_path / "stopped"
    proc, out = _terminate_mid_run([sys.executable, str(SCRIPT), str(run), str(STEPS), "0.05"],
                                   run)  # fmt: skip
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "SIGTERM received" in out
    step = _check_stopped(run, ranks=1)
    assert (run / "exit-rank0.txt").read_text().split() == ["143", str(step)]
    resumed = stop_run.train(run, STEPS)
    assert resumed["loss"] == reference["loss"]
    assert _logged_steps(run) == list(range(1, STEPS + 1))


@pytest.mark.trains
def test_sigterm_to_torchrun_stops_both_ranks_at_one_step(tmp_path):
    def torchrun(run: Path, *args: str) -> list[str]:
        return [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2",
                str(SCRIPT), str(run), str(STEPS), *args]  # fmt: skip

    straight = subprocess.Popen(torchrun(tmp_path / "straight"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    run = tmp_path / "stopped"
    proc, out = _terminate_mid_run(torchrun(run, "0.05"), run)
    assert proc.returncode != 0
    assert out.count("SIGTERM received") == 2, out[-3000:]  # each rank, once
    step = _check_stopped(run, ranks=2)
    for rank in (0, 1):  # both ranks stopped after the checkpointed step, with 128 + SIGTERM
        assert (run / f"exit-rank{rank}.txt").read_text().split() == ["143", str(step)]
    assert straight.wait(timeout=120) == 0, straight.stderr.read()[-3000:]
    rerun = subprocess.run(torchrun(run), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert read_metrics(run / "metrics.jsonl")[-1]["loss"] == expected[-1]["loss"]


def test_stop_signals_record_the_first_signal_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals() as stop:
        assert stop.agreed() == 0
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGTERM)  # a second signal while stopping is ignored
        assert stop.agreed() == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is before
    stopped = TrainingStopped(signal.SIGUSR1, 7, Path("step_000007"))
    assert stopped.code == 128 + signal.SIGUSR1 and "SIGUSR1 after step 7" in str(stopped)


class _SignalAt:
    """A callback that sends this process SIGTERM at one step, as `scancel` would."""

    every = 1

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step, model):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}


def test_a_signal_on_a_step_that_logs_nothing_still_checkpoints_it(tmp_path):
    """With log_every > 1 most steps keep their metrics on the device (no host sync); the stop
    checkpoint must read them first (it once failed: 'Object of type Tensor is not JSON
    serializable', leaving a step_N.tmp)."""
    import torch

    from llm_train.config import TrainConfig
    from llm_train.trainer import Trainer

    toy = _stop_run().toy
    config = TrainConfig(
        steps=20, lr=1e-2, warmup_steps=2, precision="fp32", log_every=10,
        checkpoint_every=1000, spike_k=0, grad_accum_steps=1,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(toy.ToyModel(), toy.ToyLoader(), config, tmp_path, callbacks=[_SignalAt(3)])
    with pytest.raises(TrainingStopped) as stopped:
        trainer.fit()
    assert stopped.value.code == 128 + signal.SIGTERM
    newest = formats.step_dirs(tmp_path / "checkpoints")[0]
    # The signal came in step 3's callbacks, after the ranks agreed for step 3: the step in
    # flight, 4 (not logged: log_every=10), is the one finished and saved.
    assert formats.step_of(newest) == 4 and not formats.stale_tmp_dirs(tmp_path / "checkpoints")
    assert isinstance(formats.read_manifest(newest)["metrics"]["loss"], float)
