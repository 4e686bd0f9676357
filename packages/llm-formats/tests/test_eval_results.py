import json

import pytest

from llm_formats.eval_results import (
    RESULTS_FILE,
    read_summary,
    read_task_records,
    task_records_path,
    write_jsonl_records,
    write_summary,
)
from llm_formats.jsonl import FormatError


def test_write_then_read(tmp_path):
    records = [{"id": 0, "pred": 1, "text": "é"}, {"id": "x", "skipped": "too long"}]
    write_jsonl_records(task_records_path(tmp_path, "piqa"), records)
    summary = {"metadata": {"model": "m"}, "tasks": {"piqa": {"acc": 0.5}}, "skipped": []}
    write_summary(tmp_path, summary)
    assert (tmp_path / RESULTS_FILE).read_text() == json.dumps(summary, indent=2) + "\n"
    assert read_summary(tmp_path) == summary
    assert read_task_records(tmp_path, "piqa") == records
    assert "é" in (tmp_path / "piqa.jsonl").read_text(encoding="utf-8")


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a results directory"):
        read_summary(tmp_path)
    (tmp_path / RESULTS_FILE).write_text('{"metadata": {}}')
    with pytest.raises(FormatError, match="field 'tasks'"):
        read_summary(tmp_path)
    (tmp_path / "t.jsonl").write_text('{"id": 1}\n{"pred": 2}\n')
    with pytest.raises(FormatError, match=r"t\.jsonl:2: .*'id'"):
        read_task_records(tmp_path, "t")
