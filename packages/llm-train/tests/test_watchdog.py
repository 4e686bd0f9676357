"""Hang watchdog (stack dump + exit) and synchronised GC in the trainer."""

import gc
import subprocess
import sys
import textwrap

from llm_train.config import TrainConfig
from llm_train.metrics import read_metrics
from llm_train.trainer import Trainer
from llm_train.watchdog import StepWatchdog


def test_hung_step_dumps_stacks_and_exits_nonzero(tmp_path):
    # The child's "step" blocks on an event nobody sets, as a rank stuck in a collective does.
    script = textwrap.dedent(f"""
        import threading
        from llm_train.watchdog import StepWatchdog

        def stuck_in_collective():
            threading.Event().wait(60)

        dog = StepWatchdog(0.5, {str(tmp_path)!r}, rank=1)
        dog.arm(7)
        stuck_in_collective()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 1
    dump = (tmp_path / "hang-rank1.txt").read_text()
    assert "step timeout 0.5 s" in dump and "Timeout" in dump and "stuck_in_collective" in dump


def test_watchdog_off_and_disarmed_leave_no_file(tmp_path):
    off = StepWatchdog(0, tmp_path)
    off.arm(1)
    off.close()
    dog = StepWatchdog(30, tmp_path)
    dog.arm(1)
    dog.disarm()
    dog.close()
    assert list(tmp_path.iterdir()) == []


class GcProbe:
    """A callback recording whether automatic GC is on while the trainer runs."""

    every = 1

    def __init__(self) -> None:
        self.enabled = []

    def __call__(self, step, model):
        self.enabled.append(gc.isenabled())
        return {}


def test_synced_gc_collects_every_n_steps_and_restores_gc(toy, tmp_path):
    assert gc.isenabled()
    probe = GcProbe()
    config = TrainConfig(steps=6, lr=1e-2, log_every=1, gc_every=3, step_timeout_s=60)
    Trainer(toy.Model(), toy.Loader(), config, tmp_path, callbacks=[probe]).fit()
    assert probe.enabled == [False] * 6 and gc.isenabled()
    timed = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "gc_s" in r]
    assert timed == [3, 6]
    assert not list(tmp_path.glob("hang-rank*.txt"))  # armed every step, never fired


def test_derived_timeouts_wait_for_measurements_and_keep_a_floor(tmp_path, monkeypatch):
    import llm_train.watchdog as watchdog

    now = [0.0]
    monkeypatch.setattr(watchdog.time, "perf_counter", lambda: now[0])
    dog = StepWatchdog(0, tmp_path, auto=True)
    for seconds in (1.0, 50.0, 2.0):  # the warm-up steps, then a save
        assert dog.timeout("step") == 0  # not watched until WARMUP steps are measured
        dog.arm(1)
        now[0] += seconds
        dog.disarm()
    assert dog.timeout("step") == watchdog.FACTOR * 50.0  # 10 x the slowest step
    assert dog.timeout("save") == 0  # no save measured yet
    dog.arm(3, "save")
    now[0] += 1.0
    dog.disarm()
    assert dog.timeout("save") == watchdog.FLOOR_S  # 10 x 1 s is under the floor
    assert StepWatchdog(0, tmp_path, auto=False).timeout("step") == 0  # off
    assert StepWatchdog(7, tmp_path, auto=False).timeout("step") == 7  # fixed


class Armed:
    """Records each faulthandler timer armed (instead of arming it)."""

    def __init__(self) -> None:
        self.timeouts = []

    def __call__(self, timeout, **kwargs):
        self.timeouts.append(timeout)


def test_the_watchdog_is_on_by_default_and_covers_callbacks_and_saves(toy, tmp_path, monkeypatch):
    import faulthandler

    armed = Armed()
    monkeypatch.setattr(faulthandler, "dump_traceback_later", armed)
    probe = GcProbe()  # a callback every step
    config = TrainConfig(steps=8, lr=1e-2, checkpoint_every=2)
    trainer = Trainer(toy.Model(), toy.Loader(), config, tmp_path, callbacks=[probe])
    phases = []
    real_arm = trainer._watchdog.__class__.arm

    def arm(self, step, phase="step"):
        phases.append((phase, self.timeout(phase)))
        real_arm(self, step, phase)

    monkeypatch.setattr(trainer._watchdog.__class__, "arm", arm)
    trainer.fit()
    watched = {phase for phase, timeout in phases if timeout > 0}
    assert watched == {"step", "callback 0", "save"}  # once each was measured
    assert armed.timeouts and min(armed.timeouts) >= 300  # the floor: toy steps take ms
