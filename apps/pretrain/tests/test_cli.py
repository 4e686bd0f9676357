"""The command line: where options may go, and the run directory lock."""

import json
import os
import socket
import subprocess
import sys

import pytest

from pretrain import pipeline
from pretrain.cli import main, parse_args


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "my.yaml", "train.steps=5"],
        ["--config", "my.yaml", "train", "train.steps=5"],
        ["train", "train.steps=5", "--config", "my.yaml"],
    ],
)
def test_options_go_before_or_after_the_stage(argv):
    args = parse_args(argv)
    assert (args.stage, args.config, args.overrides) == ("train", "my.yaml", ["train.steps=5"])


def _existing_run(tmp_path):
    """An existing (empty) run: enough for the report stage, which takes the lock."""
    run = tmp_path / "sample"
    run.mkdir()
    (run / "stages.json").write_text("{}")
    return run, ["report", f"run.root={tmp_path}"]


def test_a_second_run_on_a_locked_run_directory_fails(tmp_path, monkeypatch, capsys):
    run, args = _existing_run(tmp_path)
    inner = []

    def report_that_starts_a_second_run(config, run_dir):
        inner.append(main(args))  # a second `pretrain` on the same run, while this one runs
        return {}

    monkeypatch.setitem(pipeline._STAGES, "report", (report_that_starts_a_second_run, ()))
    assert main(args) == 0
    assert inner == [1]
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and socket.gethostname() in err and "started" in err


def test_the_lock_of_a_dead_process_does_not_block(tmp_path, capsys):
    run, args = _existing_run(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert main(args) == 1
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()  # dies without unlocking: the OS releases its flock
        holder.wait()
    assert main(args) == 0
    lock = json.loads((run / "pretrain.lock").read_text())
    assert lock["pid"] == os.getpid()


_HOLD_LOCK = """
import sys
from pathlib import Path
from pretrain.rundir import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""
