"""llm_formats.metrics: records, and the one reader (torn last line dropped, damage an error)."""

from __future__ import annotations

import logging
import re

import pytest

from llm_formats.metrics import (
    METRICS_FILE,
    MetricsError,
    make_record,
    read_metrics,
    read_records,
    record_line,
)


def write(path, records, tail=""):
    path.write_text("".join(record_line(make_record(s, m)) for s, m in records) + tail)
    return path


def test_records_round_trip_with_non_finite_as_null(tmp_path):
    path = write(tmp_path / METRICS_FILE, [(1, {"loss": 2.5}), (2, {"loss": float("nan")})])
    assert path.read_text() == '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": null}\n'
    assert read_metrics(path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": None}]
    assert read_records(tmp_path / "missing.jsonl") == ([], 0)


def test_a_torn_last_line_is_dropped_counted_and_warned_about(tmp_path, caplog):
    path = write(tmp_path / METRICS_FILE, [(1, {"loss": 2.5})], tail='{"step": 2, "lo')
    assert read_records(path) == ([{"step": 1, "loss": 2.5}], 1)
    with caplog.at_level(logging.WARNING):
        assert read_metrics(path) == [{"step": 1, "loss": 2.5}]
    assert "torn last line" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '{"loss": 1.0}', '{"step": "3"}'])
def test_a_bad_line_before_the_last_names_file_and_line(tmp_path, bad):
    path = tmp_path / METRICS_FILE
    path.write_text(f'{{"step": 1}}\n{bad}\n{{"step": 3}}\n')
    with pytest.raises(MetricsError, match=f"^{re.escape(str(path))}:2: not a metrics record"):
        read_metrics(path)
