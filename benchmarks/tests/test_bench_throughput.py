"""bench_throughput: preset specs, the micro-batch / checkpointing search, and one CPU run of the
whole benchmark at debug size under a memory cap (seconds)."""

import csv
import sys

import pytest

from benchmarks.throughput import bench_throughput
from benchmarks.throughput.bench_throughput import parse_preset
from benchmarks.throughput.search import OutOfMemory, search


def test_parse_preset_types_values():
    assert parse_preset("llama-1b") == ("llama-1b", {})
    name, overrides = parse_preset("debug:vocab_size=4096,norm_eps=1e-5,kernels=false,x=abc")
    assert name == "debug"
    assert overrides == {"vocab_size": 4096, "norm_eps": 1e-5, "kernels": False, "x": "abc"}
    assert overrides["kernels"] is False  # not the truthy string "false"
    assert parse_preset("debug:kernels=True")[1] == {"kernels": True}


def test_parse_preset_rejects_items_without_a_value():
    with pytest.raises(ValueError, match="not field=value"):
        parse_preset("debug:kernels")


def _fake(limit_no_ac: int, limit_ac: int, oom_by: str):
    """A device where micro-batches up to the limits fit; tokens/s grows with the micro-batch
    and checkpointing costs a quarter. ``oom_by``: "cap" (the memory rule) or "error"."""
    calls = []

    def fits(mb, ac):
        return mb <= (limit_ac if ac else limit_no_ac)

    def measure(mb, ac):
        calls.append((mb, ac))
        if oom_by == "error" and not fits(mb, ac):
            raise OutOfMemory("CUDA out of memory")
        return 100.0 * mb * (0.75 if ac else 1.0), None

    def needed(mb, ac):
        return 10 if oom_by == "error" or fits(mb, ac) else 1000

    return calls, measure, needed


@pytest.mark.parametrize("oom_by", ["cap", "error"])
def test_search_doubles_until_the_first_misfit_then_checkpoints(oom_by):
    calls, measure, needed = _fake(limit_no_ac=4, limit_ac=16, oom_by=oom_by)
    result = search(measure, needed, 100, max_micro_batch=64)
    tried = [(t.micro_batch, t.activation_checkpointing) for t in result.trials]
    # 1, 2, 4 fit; 8 does not: stop. Checkpointing from 8 (at 4 and below it only costs): 8, 16
    # fit, 32 does not.
    assert tried == [(1, False), (2, False), (4, False), (8, False), (8, True), (16, True),
                     (32, True)]  # fmt: skip
    ran = [(1, False), (2, False), (4, False), (8, True), (16, True)]
    assert calls == (ran if oom_by == "cap" else tried)  # the cap skips the run itself
    best = result.best
    assert (best.micro_batch, best.activation_checkpointing, best.tokens_per_s) == (16, True, 1200)
    assert all(t.reason for t in result.trials if t.tokens_per_s is None)


def test_search_without_a_misfit_never_checkpoints():
    calls, measure, needed = _fake(limit_no_ac=1000, limit_ac=1000, oom_by="cap")
    result = search(measure, needed, 100, max_micro_batch=6)  # 8 > 6: stops, nothing ran out
    assert calls == [(1, False), (2, False), (4, False)]
    assert result.best.micro_batch == 4


def test_search_fixed_modes_and_nothing_fits():
    calls, measure, needed = _fake(limit_no_ac=0, limit_ac=0, oom_by="cap")
    result = search(measure, needed, 100, max_micro_batch=8)
    assert [(t.micro_batch, t.activation_checkpointing) for t in result.trials] == [
        (1, False), (1, True)]  # fmt: skip
    assert result.best is None and calls == []
    calls, measure, needed = _fake(limit_no_ac=2, limit_ac=8, oom_by="cap")
    result = search(measure, needed, 100, max_micro_batch=8, ac="on")
    assert calls == [(1, True), (2, True), (4, True), (8, True)]
    with pytest.raises(ValueError, match="max_micro_batch must be >= 1"):
        search(measure, needed, 100, max_micro_batch=0)


TINY = "debug:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,ffn_hidden=128,vocab_size=256"


def test_cpu_run_searches_under_the_cap_and_lists_what_does_not_fit(tmp_path, monkeypatch):
    # A cap between the estimates of micro-batch 2 and 4 (no checkpointing) at seq 16: the run
    # must measure 1 and 2, stop at 4, then checkpoint from 4 up to the cap; llama-7b fits nowhere.
    monkeypatch.setattr(sys, "argv", ["bench_throughput.py"])
    args = bench_throughput._parser().parse_args(["--precision", "fp32"])
    import torch

    cpu = torch.device("cpu")
    need = {(mb, ac): bench_throughput._needed(TINY, 16, mb, ac, args, cpu)
            for mb in (1, 2, 4, 8, 16) for ac in (False, True)}  # fmt: skip
    assert need[(2, False)] < need[(4, False)]
    cap_gib = (need[(2, False)] + need[(4, False)]) / 2 / 2**30
    argv = ["--presets", TINY, "llama-7b", "--seq-len", "16", "--steps", "1", "--warmup", "0",
            "--max-micro-batch", "16", "--memory-cap-gib", f"{cap_gib:.9f}",
            "--out-dir", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert bench_throughput.main(argv) == 0
    md = next(tmp_path.glob("throughput-*.md")).read_text()
    rows = list(csv.DictReader(line for line in next(tmp_path.glob("throughput-*.csv"))
                               .read_text().splitlines() if not line.startswith("#")))  # fmt: skip
    ran = [(int(r["micro_batch"]), r["activation_checkpointing"] == "True") for r in rows]
    fits_ac = [mb for mb in (4, 8, 16) if need[(mb, True)] <= cap_gib * 2**30]
    assert ran == [(1, False), (2, False)] + [(mb, True) for mb in fits_ac]
    assert sum(r["best"] == "True" for r in rows) == 1
    assert "## Did not fit" in md and "| llama-7b | 16 |" in md
    assert "load average" in md and "| Model | SeqLen | #GPUs | GPU | MFU | HFU |" in md
    assert next(tmp_path.glob("throughput-*.png")).stat().st_size > 0
