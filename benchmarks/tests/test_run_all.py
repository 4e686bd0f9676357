"""benchmarks/run_all.py: the registry, which suites run on which machine, and the run itself
(with stand-in scripts: no real benchmark runs here)."""

import pytest

from benchmarks import run_all

REGISTRY = """
[[suite]]
name = "gpu-only"
script = "benchmarks/gpu_only.py"
gpu = true
quick = true

[[suite]]
name = "gpu-with-cpu-mode"
script = "benchmarks/ok.py"
gpu = true
quick = true
args = ["--full"]
cpu_args = ["--smoke"]

[[suite]]
name = "missing"
script = "benchmarks/not_written_yet.py"
gpu = false
quick = true

[[suite]]
name = "slow"
script = "benchmarks/ok.py"
gpu = false
quick = false
args = ["--long"]

[[suite]]
name = "fails"
script = "benchmarks/fails.py"
gpu = false
quick = true
"""


@pytest.fixture
def repo(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "suites.toml").write_text(REGISTRY)
    (bench / "gpu_only.py").write_text("raise SystemExit('must not run on a CPU')\n")
    (bench / "ok.py").write_text("import sys; print('ok.py ran with', sys.argv[1:])\n")
    (bench / "fails.py").write_text("raise SystemExit(3)\n")
    return tmp_path


def test_the_shipped_registry_loads():
    suites = run_all.load_registry()
    names = [s.name for s in suites]
    assert {"kernels", "throughput", "tokenize", "eval", "data-loader", "ladder"} <= set(names)
    for s in suites:
        assert s.script.endswith(".py")
        if s.gpu:  # every GPU suite can at least be exercised on a CPU machine
            assert s.cpu_args is not None, s.name


def test_plan_on_a_cpu(repo):
    suites = run_all.load_registry(repo / "benchmarks" / "suites.toml")
    plans = {p.suite.name: p for p in run_all.plan(suites, has_gpu=False, quick=False, root=repo)}
    assert plans["gpu-only"].command is None and "needs a CUDA GPU" in plans["gpu-only"].skip
    assert plans["gpu-with-cpu-mode"].command[-1] == "--smoke"
    assert plans["missing"].skip == "benchmarks/not_written_yet.py is not in this checkout"
    assert plans["slow"].command[-1] == "--long"
    on_gpu = run_all.plan(suites, has_gpu=True, quick=False, root=repo)
    assert on_gpu[0].command is not None and on_gpu[1].command[-1] == "--full"
    quick = {p.suite.name: p for p in run_all.plan(suites, has_gpu=False, quick=True, root=repo)}
    assert "not a quick suite" in quick["slow"].skip


def test_run_skips_with_reasons_and_fails_on_a_failed_suite(repo, capsys):
    argv = ["--registry", str(repo / "benchmarks" / "suites.toml")]
    assert run_all.main(argv, has_gpu=False) == 1  # fails.py exits 3
    out = capsys.readouterr().out
    assert "=== gpu-only: skipped: needs a CUDA GPU" in out
    assert "=== missing: skipped: benchmarks/not_written_yet.py is not in this checkout" in out
    assert "fails        FAILED (3)" in out
    assert "gpu-with-cpu-mode ok" in out  # ran its CPU mode
    assert run_all.main([*argv, "--only", "slow", "gpu-only"], has_gpu=False) == 0
    assert "must not run" not in capsys.readouterr().out


def test_list_and_bad_registries(repo, tmp_path, capsys):
    argv = ["--registry", str(repo / "benchmarks" / "suites.toml")]
    assert run_all.main([*argv, "--list"], has_gpu=False) == 0
    assert "gpu-with-cpu-mode python -m benchmarks.ok --smoke" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_all.main([*argv, "--only", "nope"], has_gpu=False)
    assert "unknown suite(s) ['nope']" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[[suite]]\nname = "x"\nscript = "x.py"\ngpu = "yes"\nquick = true\n')
    with pytest.raises(ValueError, match=r"number 1 \(x\): 'gpu' must be a bool"):
        run_all.load_registry(bad)
    bad.write_text('[[suite]]\nname = "x"\nscript = "x.py"\ngpu = true\nquick = true\nfoo = 1\n')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['foo'\]"):
        run_all.load_registry(bad)
