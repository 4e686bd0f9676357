"""With and without llm-kernels: same results within dtype tolerance (GPU only)."""

import pytest
import torch

from llm_model import Transformer, get_preset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_kernels_match_pure_torch_path():
    pytest.importorskip("llm_kernels", reason="llm-kernels ([kernels] extra) not installed")
    torch.manual_seed(0)
    config = get_preset("debug", vocab_size=1000, z_loss=1e-4)
    fused = Transformer(config).cuda()
    plain = Transformer(get_preset("debug", vocab_size=1000, z_loss=1e-4, kernels=False)).cuda()
    plain.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 1000, (4, 128), device="cuda")
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100
    torch.testing.assert_close(fused(ids), plain(ids), atol=1e-4, rtol=1e-4)
    a, b = fused(ids, labels), plain(ids, labels)
    for key in ("loss", "ce", "z_loss"):
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    a["loss"].backward()
    b["loss"].backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_kernels_match_pure_torch_path_under_bf16_autocast():
    # fp32 master weights, bf16 autocast: how llm-train runs the model on a GPU.
    pytest.importorskip("llm_kernels", reason="llm-kernels ([kernels] extra) not installed")
    torch.manual_seed(0)
    fused = Transformer(get_preset("debug", vocab_size=1000, z_loss=1e-4)).cuda()
    plain = Transformer(get_preset("debug", vocab_size=1000, z_loss=1e-4, kernels=False)).cuda()
    plain.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 1000, (4, 128), device="cuda")
    labels = ids.roll(-1, 1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = fused(ids, labels), plain(ids, labels)
    torch.testing.assert_close(a["loss"], b["loss"], atol=2e-2, rtol=2e-2)
    a["loss"].backward()
    b["loss"].backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert p.grad.dtype == torch.float32, name
        error = (p.grad - q.grad).norm() / q.grad.norm().clamp(min=1e-12)
        assert error < 5e-2, f"{name}: relative gradient error {error:.3g}"
