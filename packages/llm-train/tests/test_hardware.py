import pytest

from llm_train.hardware import peak_flops_for_device


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA GeForce RTX 4090", 0.0),  # unlisted: no MFU rather than a wrong one
        ("cpu", 0.0),
    ],
)
def test_peak_flops_for_device(name, peak):
    assert peak_flops_for_device(name) == peak
