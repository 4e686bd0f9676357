"""Workspace-wide rules from ARCHITECTURE.md: the dependency rule, layout, self-contained docs."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["llm_formats", "llm_kernels", "llm_model", "llm_tokenize", "llm_data", "llm_train",
            "llm_eval"]  # fmt: skip
ALLOWED = {  # package -> siblings it may import (ARCHITECTURE.md, "Dependency rule")
    "llm_formats": set(),  # the seams: imported by every package, imports none
    "llm_kernels": {"llm_formats"},
    "llm_model": {"llm_formats", "llm_kernels"},
    "llm_tokenize": {"llm_formats"},
    "llm_data": {"llm_formats"},
    "llm_train": {"llm_formats"},
    "llm_eval": {"llm_formats"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_no_forbidden_sibling_imports(package):
    src = ROOT / "packages" / package.replace("_", "-") / "src" / package
    bad = []
    for path in sorted(src.rglob("*.py")):
        forbidden = (imported_roots(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        bad += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(forbidden)]
    assert not bad, "ARCHITECTURE.md dependency rule broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_declares_only_allowed_siblings(package):
    meta = tomllib.loads(
        (ROOT / "packages" / package.replace("_", "-") / "pyproject.toml").read_text()
    )
    deps = list(meta["project"].get("dependencies", []))
    for extra in meta["project"].get("optional-dependencies", {}).values():
        deps += extra
    siblings = {
        d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip()
        for d in deps
    }
    declared = {s.replace("-", "_") for s in siblings} & set(PACKAGES)
    assert declared <= ALLOWED[package], f"{package} declares {declared - ALLOWED[package]}"


def test_formats_is_standard_library_only():
    meta = tomllib.loads((ROOT / "packages/llm-formats/pyproject.toml").read_text())
    assert meta["project"]["dependencies"] == [] and not meta["project"].get("optional-dependencies")
    src = ROOT / "packages/llm-formats/src/llm_formats"
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(src.rglob("*.py"))
        for name in sorted(imported_roots(path))
        if name not in sys.stdlib_module_names and name != "llm_formats"
    ]
    assert not bad, "llm-formats must need only the standard library:\n" + "\n".join(bad)


def test_tokenize_and_data_core_do_not_need_torch():
    meta = tomllib.loads((ROOT / "packages/llm-tokenize/pyproject.toml").read_text())
    assert not any(d.startswith("torch") for d in meta["project"]["dependencies"])
    meta = tomllib.loads((ROOT / "packages/llm-data/pyproject.toml").read_text())
    assert not any(d.startswith("torch") for d in meta["project"]["dependencies"])


def test_lockfile_is_not_tracked():
    tracked = subprocess.run(
        ["git", "ls-files", "uv.lock"], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout.strip() == "", "uv.lock must not be committed (ARCHITECTURE.md)"


def test_sample_corpus_is_small_and_licensed():
    sample = ROOT / "data" / "sample"
    size = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"sample corpus is {size / 2**20:.1f} MiB, over the 8 MiB budget"
    readme = (sample / "README.md").read_text()
    for needle in ("GPL-2.0+", "public domain", "PSF License", "CC-BY-SA-4.0"):
        assert needle in readme


def test_docs_stay_inside_the_repository():
    # A clone holds no ../shared and no DESIGN.md: docs must point at ARCHITECTURE.md instead.
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    docs = tracked.stdout.split()
    assert "ARCHITECTURE.md" in docs
    bad = [
        f"{name}:{i}: {line.strip()}"
        for name in docs
        for i, line in enumerate((ROOT / name).read_text().splitlines(), 1)
        if "../shared" in line or "DESIGN.md" in line
    ]
    assert not bad, "docs point outside the repository:\n" + "\n".join(bad)
