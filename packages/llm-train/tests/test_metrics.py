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


def test_wandb_offline_writes_a_run_dir(toy, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (the [wandb] extra)")
    from llm_train.config import TrainConfig
    from llm_train.trainer import Trainer

    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's offline mode applies
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = TrainConfig(steps=2, precision="fp32", log_every=1, wandb=True, wandb_project="t")
    Trainer(toy.Model(), toy.Loader(), config, tmp_path / "run").fit()
    runs = list((tmp_path / "run" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert list(runs[0].glob("*.wandb"))  # the run's records, for `wandb sync` later
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_a_symlinked_metrics_file_is_refused_not_appended_to(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(OSError, match=r"metrics\.jsonl is a symbolic link"):
        MetricsWriter(tmp_path / "run" / "metrics.jsonl")
    assert outside.read_text() == "precious"
