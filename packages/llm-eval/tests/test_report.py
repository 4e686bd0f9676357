"""llm_eval.report: the plot never writes through a symbolic link planted beside it."""

import pytest

from llm_eval.report import plot_over_steps

pytest.importorskip("matplotlib", reason="matplotlib (plots extra) missing")


def test_plot_is_written_atomically_not_through_a_planted_tmp_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "plot.png"
    (tmp_path / "plot.png.tmp.png").symlink_to(outside)  # the fixed name it used to write
    rows = [{"step": s, "tasks": {"t": {"acc": 0.5, "acc_stderr": 0.1}}} for s in (1, 2)]
    plot_over_steps(rows, "acc", out)
    assert outside.read_text() == "precious"
    assert out.read_bytes().startswith(b"\x89PNG")
