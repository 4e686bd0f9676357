"""Curation with several worker processes: same results, and no process outlives a failure.

Each case runs in a child interpreter whose stdout is a pipe, as in `pretrain | tee log`: if any
worker or extractor sandbox survived, the pipe would never close and `communicate` would time out.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from llm_data import CurationConfig, InputError, SourceConfig, run_curation

    def main():
        path, out, fmt = sys.argv[1:4]
        source = SourceConfig(name="src", path=path, format=fmt, quality_filters=False)
        config = CurationConfig(sources=[source], output_dir=out, tasks=2, workers=2)
        try:
            print(json.dumps(run_curation(config)["src"]))
        except InputError as err:
            print(json.dumps({"error": str(err)}))

    if __name__ == "__main__":  # workers are spawned: they re-import this module
        main()
    """
)


def _curate_in_child(tmp_path, path, fmt: str) -> dict:
    script = tmp_path / "curate.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    cmd = [sys.executable, str(script), str(path), str(out), fmt]
    # A hang here means orphaned processes still hold the pipe.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_workers_keep_every_document(tmp_path):
    data = tmp_path / "docs"
    data.mkdir()
    for i in range(2):
        lines = [json.dumps({"id": f"{i}-{j}", "text": f"file {i} doc {j}"}) for j in range(5)]
        (data / f"part{i}.jsonl").write_text("\n".join(lines) + "\n")
    result = _curate_in_child(tmp_path, data, "jsonl")
    assert result["documents_out"] == 10
    assert result["stages"][0] == {"stage": "StrictJsonlReader", "in": 10, "kept": 10, "removed": 0}
    files = sorted((tmp_path / "out" / "src").glob("*.jsonl.gz"))
    lines = [line for f in files for line in gzip.decompress(f.read_bytes()).decode().splitlines()]
    assert sorted(json.loads(line)["id"] for line in lines) == [
        f"{i}-{j}" for i in range(2) for j in range(5)
    ]


def test_failing_task_leaves_no_process_behind(tmp_path, helpers):
    # One task fails in its 6th record with its own extractor sandbox alive, while the other
    # is still extracting a full WARC in its sandbox.
    web = tmp_path / "web"
    web.mkdir()
    (web / "a-good.warc.gz").write_bytes(
        (helpers.SAMPLE / "web/handbook-en-US.warc.gz").read_bytes()
    )
    (web / "b-broken.warc.gz").write_bytes(
        (helpers.SAMPLE / "web/handbook-de-DE.warc.gz").read_bytes()[:60_000]
    )
    result = _curate_in_child(tmp_path, web, "warc")
    assert "truncated WARC file" in result["error"] and "b-broken.warc.gz" in result["error"]
    assert not (tmp_path / "out").exists()
