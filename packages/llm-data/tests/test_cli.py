from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_data.cli import main

REPO = Path(__file__).parents[3]
PROSE = "\n".join(
    f"The administrator installs package number {i} and then checks that the service is "
    f"running with the new configuration file. Write to admin@falcot.com with any question."
    for i in range(12)
)


def _inputs(root: Path) -> Path:
    """A JSONL source: two English documents worth keeping and one junk line of symbols."""
    (root / "in").mkdir()
    junk = " ".join(f"#best #deal of the day and the {w} with free shipping" for w in range(60))
    lines = [{"id": "a", "text": PROSE}, {"id": "b", "text": PROSE.replace(" ", "   ")},
             {"id": "junk", "text": junk}]  # fmt: skip
    (root / "in" / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    config = root / "curate.yaml"
    config.write_text(
        f"sources:\n  - {{name: docs, path: {root / 'in'}, format: jsonl}}\n"
        f"output_dir: {root / 'out'}\nlanguages: [en]\nfineweb: {{enabled: true}}\n"
    )
    return config


def test_curate_and_inspect(tmp_path, capsys, tokenizer_json, helpers):
    config = _inputs(tmp_path)
    assert main(["curate", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "docs: 1 documents out" in out  # "b" is an exact duplicate after normalization
    args = ["inspect", str(tmp_path / "out"), "--json", "--tokenizer", str(tokenizer_json)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    docs = report["sources"]["docs"]
    assert docs["documents"] == 1 and docs["languages"] == {"en": 1}
    assert docs["pii_masked"] == {"email": 12}
    assert docs["words"] == len(PROSE.split())
    from tokenizers import Tokenizer

    (kept,) = helpers.read_curated(tmp_path / "out" / "docs")
    expected = len(Tokenizer.from_file(str(tokenizer_json)).encode(kept["text"]).ids)
    assert docs["tokens"] == expected
    removed = report["removed"]["gopher"]
    assert removed["documents"] == 1 and removed["examples"][0]["id"] == "junk"
    assert removed["examples"][0]["reason"] == "gopher_too_many_hashes"


def test_curate_to_an_object_store_url(tmp_path, capsys):
    import fsspec

    config = _inputs(tmp_path)
    config.write_text(config.read_text().replace(str(tmp_path / "out"), "memory://bucket/cur"))
    fs = fsspec.filesystem("memory")
    try:
        assert main(["curate", str(config), "--no-progress"]) == 0
        assert fs.exists("/bucket/cur/curation_stats.json")
        assert fs.glob("/bucket/cur/docs/*.jsonl.gz")
        assert main(["curate", str(config), "--no-progress"]) == 2  # exists, no --overwrite
        assert "exists" in capsys.readouterr().err
    finally:
        fs.rm("/bucket", recursive=True)


def test_unknown_key_is_an_error_naming_it(tmp_path, capsys):
    config = _inputs(tmp_path)
    config.write_text(config.read_text() + "gopher: {min_word: 3}\n")
    assert main(["curate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key curate.yaml.gopher.min_word" in err and "min_doc_words" in err
    config.write_text("sources:\n  - {name: d, path: x, format: jsonl, colour: red}\n")
    assert main(["curate", str(config)]) == 2
    assert "curate.yaml.sources[0].colour" in capsys.readouterr().err


def test_inspect_refuses_a_folder_that_is_not_curated(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "curation_stats.json" in capsys.readouterr().err


def test_shards_without_the_extra_names_it(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # as if torch were not installed
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name)
    )
    # torch is named; in an environment without the extra, streaming is missing too
    missing = r"\[shards\] extra \((streaming, )?torch not installed\).*pip install"
    with pytest.raises(SystemExit, match=missing):
        main(["shards", str(tmp_path), "--tokenizer", "t.json", "--out", "o", "--seq-len", "8"])


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not on PATH")
def test_installed_alone_without_torch(tmp_path):
    """`llm-data` in an environment of its own (uv's cache makes this a few seconds): no torch,
    and its CLI curates a folder."""
    config = _inputs(tmp_path)
    uv = ["uv", "run", "--isolated", "--no-dev", "--package", "llm-data"]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    run = lambda *args: subprocess.run(  # noqa: E731
        [*uv, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    curate = run("llm-data", "curate", str(config), "--no-progress")
    assert curate.returncode == 0, curate.stderr[-2000:]
    assert "docs: 1 documents out" in curate.stdout
    shards = run("llm-data", "shards", str(tmp_path / "out"), "--tokenizer", "t.json",
                 "--out", str(tmp_path / "s"), "--seq-len", "8")  # fmt: skip
    assert shards.returncode != 0 and "pip install 'llm-data[shards]'" in shards.stderr
    assert "torch" in shards.stderr.split("not installed")[0]  # the extra's torch is absent
