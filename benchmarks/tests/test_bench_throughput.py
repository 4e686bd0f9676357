"""bench_throughput's preset specs: overrides are typed, booleans included."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "throughput"))
from bench_throughput import parse_preset  # noqa: E402


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
