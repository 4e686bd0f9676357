"""benchmarks/_common.py: file-name slugs and the git revision without a checkout."""

from benchmarks import _common


def test_slug():
    assert _common.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert _common.slug("  AMD EPYC 7B13 64-Core Processor ") == "amd-epyc-7b13-64-core-processor"


def test_git_revision_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "ROOT", tmp_path)  # a copy of the tree with no .git
    monkeypatch.delenv("BENCH_GIT_REV", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert _common.git_revision() == "unknown"
    monkeypatch.setenv("BENCH_GIT_REV", "abc1234")
    assert _common.git_revision() == "abc1234 (from BENCH_GIT_REV)"
    meta = dict(_common.header("some device", [("triton", "3.6.0")]))
    assert list(meta) == ["date", "device", "torch", "triton", "git"]
    assert meta["git"] == "abc1234 (from BENCH_GIT_REV)" and meta["date"].endswith("UTC")
