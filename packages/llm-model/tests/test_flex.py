"""The flex-attention path equals the dense-mask SDPA path and separate documents.

Production takes flex on CUDA only; torch runs flex eagerly on CPU for the forward pass,
so these tests check it there (no grad) and force the model onto it with monkeypatch.
"""

import pytest
import torch
import torch.nn.functional as F

from llm_model import ModelConfig, Transformer, flex

pytestmark = [
    pytest.mark.skipif(flex.flex_attention is None, reason="torch without flex_attention"),
    pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
]

LENGTHS = (5, 9, 1, 9)  # documents packed into one row of T = 24
DOC_IDS = torch.repeat_interleave(torch.arange(4), torch.tensor(LENGTHS))


def dense_reference(q, k, v, doc_ids, window):
    T = q.shape[2]
    i = torch.arange(T)
    mask = (i[None] <= i[:, None]) & (doc_ids[:, :, None] == doc_ids[:, None, :])
    if window:
        mask = mask & (i[:, None] - i[None] < window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=True)


@pytest.mark.parametrize("window", [0, 4])
@torch.no_grad()
def test_flex_equals_dense_mask_and_separate_documents_with_gqa(window):
    torch.manual_seed(0)
    B, H, Hkv, T, D = 2, 4, 2, 24, 8
    q, k, v = torch.randn(B, H, T, D), torch.randn(B, Hkv, T, D), torch.randn(B, Hkv, T, D)
    doc_ids = torch.stack([DOC_IDS, torch.zeros(T, dtype=torch.long)])  # row 1: one document
    y = flex.attend(q, k, v, flex.block_mask(doc_ids, window, T, "cpu"), enable_gqa=True)
    torch.testing.assert_close(y, dense_reference(q, k, v, doc_ids, window), atol=1e-5, rtol=0)
    start = 0
    for n in LENGTHS:  # row 0, one document at a time (causal, windowed)
        s = slice(start, start + n)
        alone = dense_reference(q[:1, :, s], k[:1, :, s], v[:1, :, s], doc_ids[:1, s], window)
        torch.testing.assert_close(y[:1, :, s], alone, atol=1e-5, rtol=0)
        start += n


def packed_ids(eos):
    torch.manual_seed(1)
    ids = torch.randint(1, 97, (2, len(DOC_IDS)))
    ends = torch.tensor(LENGTHS).cumsum(0) - 1
    ids[0, ends[:-1]] = eos  # row 0: four documents; row 1: one
    return ids


@pytest.mark.parametrize("extra", [{}, {"sliding_window": 3}])
@torch.no_grad()
def test_model_flex_path_equals_dense_path(monkeypatch, extra):
    torch.manual_seed(0)
    kw = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97, doc_mask_eos_id=0)
    model = Transformer(ModelConfig(**kw, **extra)).eval()
    ids = packed_ids(eos=0)
    dense = model(ids)
    assert model._attention_inputs(torch.arange(24), None, None, DOC_IDS[None], 24).mask is not None
    monkeypatch.setattr(flex, "supported", lambda device: True)
    inputs = model._attention_inputs(torch.arange(24), None, None, DOC_IDS[None], 24)
    assert inputs.block_mask is not None and inputs.mask is None
    torch.testing.assert_close(model(ids), dense, atol=1e-5, rtol=0)


def test_dense_fallbacks_when_flex_cannot_serve(monkeypatch):
    monkeypatch.setattr(flex, "supported", lambda device: True)
    pos, docs = torch.arange(6), torch.zeros(1, 6, dtype=torch.long)
    for kw, training in (({"position": "alibi"}, False), ({"dropout": 0.1}, True)):
        model = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2, **kw)).train(training)
        inputs = model._attention_inputs(pos, None, None, docs, 6)
        assert inputs.block_mask is None and inputs.mask is not None
    model = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2, sliding_window=2))
    padding = torch.ones(1, 6, dtype=torch.bool)
    assert model._attention_inputs(pos, padding, None, None, 6).block_mask is None
    assert model._attention_inputs(pos, None, None, None, 6).block_mask is not None
    monkeypatch.undo()
    assert not flex.supported("cpu")  # CPU production runs stay on the dense path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_flex_matches_dense_on_gpu_forward_and_backward():
    torch.manual_seed(0)
    config = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97)
    dense_model = Transformer(config).cuda()
    flex_model = Transformer(config).cuda()
    flex_model.load_state_dict(dense_model.state_dict())
    ids = torch.randint(0, 97, (2, 256), device="cuda")
    doc_ids = (torch.arange(256, device="cuda") // 40).expand(2, 256)
    labels = torch.roll(ids, -1, 1)
    loss_flex = flex_model(ids, labels, doc_ids=doc_ids)["loss"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flex, "supported", lambda device: False)
        loss_dense = dense_model(ids, labels, doc_ids=doc_ids)["loss"]
    loss_flex.backward()
    loss_dense.backward()
    torch.testing.assert_close(loss_flex, loss_dense, atol=1e-4, rtol=1e-4)
    for a, b in zip(flex_model.parameters(), dense_model.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-3, rtol=1e-3)
