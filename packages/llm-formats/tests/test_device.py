"""llm_formats.device: "auto" and what a machine without CUDA refuses."""

import pytest

from llm_formats.device import resolve_device


@pytest.mark.parametrize("cuda", [True, False])
def test_auto_picks_cuda_only_where_there_is_one(cuda):
    assert resolve_device("auto", cuda_available=cuda) == ("cuda" if cuda else "cpu")


@pytest.mark.parametrize("requested", ["cpu", "cuda", "cuda:1", "mps"])
def test_a_named_device_is_kept_where_it_exists(requested):
    assert resolve_device(requested, cuda_available=True) == requested


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_an_error_naming_the_setting(requested):
    with pytest.raises(ValueError, match=r"run\.device='cuda.*no CUDA device"):
        resolve_device(requested, cuda_available=False, setting="run.device")
