"""The whole model with llm-kernels on CPU, in Triton's interpreter: fp32 and bf16 autocast."""

import os

import pytest
import torch

from llm_model import Transformer, get_preset

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 (CPU interpreter)"
)
llm_kernels = pytest.importorskip("llm_kernels", reason="llm-kernels ([kernels] extra) missing")
pytest.importorskip("triton", reason="needs triton")


def _pair():
    torch.manual_seed(0)
    kw = dict(vocab_size=300, n_layers=2, max_seq_len=16, z_loss=1e-4)
    fused = Transformer(get_preset("debug", **kw))
    plain = Transformer(get_preset("debug", kernels=False, **kw))
    plain.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 300, (2, 16))
    return fused, plain, ids, ids.roll(-1, 1)


def _grad_errors(fused, plain) -> dict[str, float]:
    return {
        name: float((p.grad - q.grad).norm() / q.grad.norm().clamp(min=1e-12))
        for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True)
    }


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_model_with_kernels_matches_pure_torch(autocast):
    from llm_model import _kernels

    fused, plain, ids, labels = _pair()
    with llm_kernels.triton_on_cpu():
        assert _kernels.available(True, ids)  # the kernels really run below
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            a = fused(ids, labels)
        a["loss"].backward()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        b = plain(ids, labels)
    b["loss"].backward()
    tol = 2e-2 if autocast else 1e-5
    torch.testing.assert_close(a["loss"], b["loss"], atol=tol, rtol=tol)
    assert a["loss"].dtype == torch.float32
    bad = {k: v for k, v in _grad_errors(fused, plain).items() if v > (5e-2 if autocast else 1e-4)}
    assert not bad, f"relative gradient errors: {bad}"
    assert all(p.grad.dtype == torch.float32 for p in fused.parameters())
