"""Run untrusted generated code in a child process, with limits, and say how it ended.

`run_program(source, config)` writes the source into a fresh temporary directory and runs it
with this interpreter (``-I -S``: no site-packages, no ``PYTHON*`` variables, no current
directory on ``sys.path``) through `llm_eval.sandbox_launcher`, which isolates the process
before it becomes the program (the README's "Sandbox" section says what each isolation level
guarantees and what it does not). It never raises for bad code: every end is a `SandboxResult`
with a status and a reason.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

__all__ = ["SandboxConfig", "SandboxResult", "isolation_available", "run_program"]

Isolation = Literal["auto", "namespaces", "rlimits"]
Status = Literal["passed", "failed", "timeout", "error"]
LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SETUP_FAILED = 125  # the launcher's exit code when isolation could not be set up
SIGXCPU, SIGKILL = 24, 9
TAIL = 2000  # characters of stderr / stdout kept in a result
BASE_UID = 200_000  # root starts each sandbox as its own unprivileged uid above this
_runs = itertools.count()


@dataclass(kw_only=True)
class SandboxConfig:
    """Limits for one program.

    Attributes:
        timeout_s: Wall-clock seconds before the program and everything it started is killed.
        cpu_s: CPU seconds per process (RLIMIT_CPU).
        memory_mb: Address space per process (RLIMIT_AS), MiB.
        max_processes: Processes (and threads) the program may have at once (RLIMIT_NPROC).
        file_mb: Largest file the program may write (RLIMIT_FSIZE), MiB; stdout/stderr too.
        isolation: ``namespaces`` (new user/mount/network/PID namespaces and a minimal root),
            ``rlimits`` (limits and an audit hook only; see the README), or ``auto``: the
            first that works on this machine, with a warning when it is ``rlimits``.
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_processes: int = 16
    file_mb: int = 16
    isolation: Isolation = "auto"

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_processes", "file_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name}: got {getattr(self, name)}; must be > 0")
        if self.isolation not in ("auto", "namespaces", "rlimits"):
            raise ValueError(
                f"SandboxConfig.isolation: got {self.isolation!r}; "
                "expected 'auto', 'namespaces' or 'rlimits'"
            )


@dataclass
class SandboxResult:
    """How a program ended: ``passed`` (exit 0), ``failed`` (it ran and did not exit 0: an
    exception, a signal, a limit it hit other than time), ``timeout`` (wall clock or CPU
    time) or ``error`` (the sandbox could not run it). ``reason`` says which and why."""

    status: Status
    reason: str
    returncode: int | None
    seconds: float
    isolation: str
    stdout: str = ""


def isolation_available() -> Literal["namespaces", "rlimits"]:
    """``namespaces`` if a trivial program runs under them on this machine, else ``rlimits``."""
    return _probe_isolation()


@functools.cache
def _probe_isolation() -> Literal["namespaces", "rlimits"]:
    probe = _run(
        "print('ok')", SandboxConfig(timeout_s=30, cpu_s=30, isolation="namespaces"), "namespaces"
    )
    if probe.status == "passed" and probe.stdout.strip() == "ok":
        return "namespaces"
    logger.warning(
        "sandbox: namespaces are not available here (%s); generated code runs with resource "
        "limits and an audit hook only, which is not a security boundary",
        probe.reason,
    )
    return "rlimits"


def run_program(source: str, config: SandboxConfig | None = None) -> SandboxResult:
    """Run ``source`` as a Python program in the sandbox and report how it ended.

    Never raises for anything the program does; an ``error`` result means the sandbox itself
    could not start it (the reason says why).
    """
    config = config or SandboxConfig()
    isolation = config.isolation
    if isolation == "auto":
        isolation = isolation_available()
    return _run(source, config, isolation)


def _run(source: str, config: SandboxConfig, isolation: str) -> SandboxResult:
    base = Path(tempfile.mkdtemp(prefix="llm-eval-sandbox-"))
    try:
        return _run_in(base, source, config, isolation)
    except OSError as err:  # could not even start the launcher
        return SandboxResult("error", f"sandbox could not start: {err}", None, 0.0, isolation)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_in(base: Path, source: str, config: SandboxConfig, isolation: str) -> SandboxResult:
    workdir, new_root = base / "work", base / "root"
    workdir.mkdir()
    new_root.mkdir()
    # surrogates a decoder let through make a SyntaxError in the program, not an error here
    (workdir / "program.py").write_text(source, encoding="utf-8", errors="surrogatepass")
    read_fd, write_fd = os.pipe()
    spec = _spec(config, isolation, workdir, new_root, write_fd)
    if os.getuid() == 0:  # the sandbox's uid must own its work directory
        os.chown(workdir, spec["uid"], spec["uid"])
    start = time.perf_counter()
    try:
        with open(base / "stdout", "wb") as out, open(base / "stderr", "wb") as err:
            proc = subprocess.Popen(
                [spec["python"], "-I", "-S", str(LAUNCHER), json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=spec["env"],
                pass_fds=(write_fd,), start_new_session=True,
            )  # fmt: skip
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the launcher has its copy; EOF once it and its children close it
    timed_out = _wait(proc, config.timeout_s)
    seconds = time.perf_counter() - start
    setup_error = _read_all(read_fd).decode("utf-8", "replace")
    stdout = _tail(base / "stdout")
    stderr = _tail(base / "stderr")
    status, reason = _classify(proc.returncode, timed_out, setup_error, stderr, config)
    return SandboxResult(status, reason, proc.returncode, seconds, isolation, stdout)


def _spec(config: SandboxConfig, isolation: str, workdir: Path, new_root: Path, fd: int) -> dict:
    python = os.path.realpath(sys._base_executable)
    prefixes = {os.path.realpath(sys.base_prefix), os.path.dirname(python)}
    env = {"PATH": "/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/sandbox", "LANG": "C.UTF-8"}
    if isolation == "rlimits":
        env.update(HOME=str(workdir), TMPDIR=str(workdir))
    return {
        "isolation": isolation,
        "python": python,
        "program": "program.py",
        "workdir": str(workdir),
        "new_root": str(new_root),
        "readonly_paths": sorted(prefixes),
        # distinct per concurrent sandbox, so RLIMIT_NPROC counts each one's processes alone
        "uid": BASE_UID + (os.getpid() * 1000 + next(_runs)) % 1_000_000,
        "env": env,  # the parent's environment never reaches the program
        "status_fd": fd,
        "cpu_seconds": config.cpu_s,
        "memory_mb": config.memory_mb,
        "max_processes": config.max_processes,
        "file_mb": config.file_mb,
    }


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the launcher; on a timeout kill its process group (in ``namespaces`` mode its
    death also kills the sandbox's PID 1, and with it every process the program started)."""
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, SIGKILL)
        proc.wait()
        return True


def _classify(
    code: int, timed_out: bool, setup_error: str, stderr: str, config: SandboxConfig
) -> tuple[Status, str]:
    if setup_error:
        return "error", setup_error
    if timed_out:
        return "timeout", f"wall-clock limit of {config.timeout_s:g} s"
    if code == 0:
        return "passed", ""
    if code in (-SIGXCPU, 128 + SIGXCPU):
        return "timeout", f"CPU limit of {config.cpu_s} s"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if code > 128 or code < 0:
        signal_number = code - 128 if code > 0 else -code
        return "failed", f"killed by signal {signal_number}" + (f": {last}" if last else "")
    return "failed", last or f"exit {code}"


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL))
        return f.read().decode("utf-8", "replace")
