import json

import pytest

from llm_train.metrics import MetricsWriter, read_metrics


def test_jsonl_lines_flushed_nan_as_null_and_truncate(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    writer = MetricsWriter(path)
    writer.write(1, {"loss": 3.5, "lr": 1e-3})
    # Flushed per line: readable before close.
    assert json.loads(path.read_text()) == {"step": 1, "loss": 3.5, "lr": 1e-3}
    writer.write(2, {"loss": float("nan")})
    writer.write(3, {"loss": 2.5, "eval/bpb": 1.25})
    writer.truncate_after(2)
    writer.write(3, {"loss": 2.0})
    writer.close()
    assert read_metrics(path) == [
        {"step": 1, "loss": 3.5, "lr": 1e-3},
        {"step": 2, "loss": None},
        {"step": 3, "loss": 2.0},
    ]


def test_torn_last_line_ignored_but_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 1.0}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(path)


def test_tensorboard_mirror(tmp_path):
    pytest.importorskip("tensorboard")
    writer = MetricsWriter(tmp_path / "m.jsonl", tensorboard_dir=tmp_path / "tb")
    writer.write(1, {"loss": 1.0})
    writer.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
