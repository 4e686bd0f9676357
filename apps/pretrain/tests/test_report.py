"""pretrain report reads metrics.jsonl through llm_formats.metrics, like llm_train does."""

from __future__ import annotations

import json
import re

import pytest

from pretrain.report import write_report


def _run(tmp_path, tail: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "stages.json").write_text(json.dumps({"train": {"steps": 2, "seconds": 1.0}}))
    lines = [json.dumps({"step": s, "loss": 4.0 - s}) + "\n" for s in (1, 2)]
    (run / "metrics.jsonl").write_text(lines[0] + tail + lines[1])
    return run


def test_report_reads_a_run_whose_last_metrics_line_is_torn(tmp_path):
    """A crash while a line was written leaves it torn; the report used to raise on it."""
    run = _run(tmp_path, "")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "lo')
    report = write_report(run).read_text()
    assert "## Training" in report and "| train | 1.0 |" in report


def test_report_names_file_and_line_of_a_corrupt_metrics_line(tmp_path):
    run = _run(tmp_path, "not json\n")
    with pytest.raises(ValueError, match=re.escape(f"{run / 'metrics.jsonl'}:2:")):
        write_report(run)
    assert not (run / "report.md").exists()
