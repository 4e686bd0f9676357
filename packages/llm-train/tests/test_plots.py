import pytest

from llm_train.metrics import MetricsWriter


def test_plot_loss_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from llm_train.plots import plot_loss

    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    for step in range(1, 21):
        metrics = {"loss": 4.0 / step, "lr": 1e-3}
        if step % 10 == 0:
            metrics["eval/bpb"] = 2.0 / step
        writer.write(step, metrics)
    writer.close()
    out = plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert out == tmp_path / "loss.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "metrics.jsonl"]


def test_plot_loss_without_loss_is_an_error(tmp_path):
    pytest.importorskip("matplotlib")
    from llm_train.plots import plot_loss

    (tmp_path / "m.jsonl").write_text('{"step": 1, "lr": 0.1}\n')
    with pytest.raises(ValueError, match="no records with a 'loss'"):
        plot_loss(tmp_path / "m.jsonl", tmp_path / "x.png")


def test_panels_split_loss_parts_from_eval_metrics():
    from llm_train.plots import panels

    records = [
        {"step": 1, "loss": 3.0, "ce": 3.0, "z_loss": 0.1, "lr": 1e-3},
        {"step": 2, "loss": 2.0, "ce": 2.0, "z_loss": 0.1, "eval/bpb": 1.5, "eval/arc/acc": 0.3},
    ]
    # ce equals the loss at every step, so it adds nothing; z_loss differs and is drawn.
    assert panels(records) == (["z_loss"], ["eval/arc/acc", "eval/bpb"])
    records[1]["ce"] = 1.9
    assert panels(records)[0] == ["ce", "z_loss"]
