import math

import pytest
import torch

from llm_model import ModelConfig, Transformer
from llm_model.attention import Attention, AttentionInputs
from llm_model.position import alibi_slopes, apply_rope, rope_cos_sin


def cfg(**kw):
    return ModelConfig(**{**dict(d_model=64, n_layers=2, n_heads=4, vocab_size=97), **kw})


def manual_attention(attn: Attention, x, bias=None):
    """Textbook softmax(QK^T / sqrt(d) + bias + causal) V with K/V heads repeated."""
    B, T, _ = x.shape
    H, Hkv, D = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = attn.wq(x).view(B, T, H, D)
    k = attn.wk(x).view(B, T, Hkv, D)
    v = attn.wv(x).view(B, T, Hkv, D)
    if attn.config.position == "rope":
        cos, sin = rope_cos_sin(torch.arange(T), attn.config.rotary_dim, attn.config.rope_theta)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    k = k.repeat_interleave(H // Hkv, dim=1)
    v = v.repeat_interleave(H // Hkv, dim=1)
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    if bias is not None:
        s = s + bias
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
    return attn.wo(y)


@pytest.mark.parametrize("kv", [4, 2, 1])  # MHA, GQA, MQA
def test_attention_equals_textbook_with_repeated_kv_heads(kv):
    torch.manual_seed(0)
    model = Transformer(cfg(n_kv_heads=kv))
    attn = model.blocks[0].attn
    x = torch.randn(2, 9, 64)
    c = model.config
    cos, sin = rope_cos_sin(torch.arange(9), c.rotary_dim, c.rope_theta)
    y = attn(x, AttentionInputs(cos=cos, sin=sin))
    torch.testing.assert_close(y, manual_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_gqa_model_equals_mha_model_with_repeated_kv_weights():
    torch.manual_seed(0)
    gqa = Transformer(cfg(n_kv_heads=2))
    mha = Transformer(cfg())
    state = gqa.state_dict()
    for i in range(2):
        for w in ("wk", "wv"):
            key = f"blocks.{i}.attn.{w}.weight"
            state[key] = state[key].view(2, 16, 64).repeat_interleave(2, dim=0).reshape(64, 64)
    mha.load_state_dict(state)
    ids = torch.randint(0, 97, (2, 11))
    torch.testing.assert_close(gqa(ids), mha(ids), atol=1e-5, rtol=1e-5)


def test_alibi_attention_adds_slope_times_distance():
    torch.manual_seed(0)
    model = Transformer(cfg(position="alibi"))
    attn = model.blocks[0].attn
    x = torch.randn(1, 6, 64)
    pos = torch.arange(6)
    bias = -alibi_slopes(4).view(4, 1, 1) * (pos[:, None] - pos[None, :]).float()
    inputs = model._attention_inputs(pos, None, None, None, 6)
    torch.testing.assert_close(attn(x, inputs), manual_attention(attn, x, bias), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["head", "full"])
def test_qk_norm_normalises_queries_and_keys(mode):
    # with RMS-normed q and k, scaling wq and wk changes nothing (without, it sharpens softmax)
    torch.manual_seed(0)
    for qk_norm, invariant in ((mode, True), ("none", False)):
        # GQA, so that "full" norms differ in width: q over 4 heads, k over 2
        attn = Transformer(cfg(qk_norm=qk_norm, n_kv_heads=2, position="none")).blocks[0].attn
        x = torch.randn(1, 5, 64)
        inputs = AttentionInputs()
        y0 = attn(x, inputs)
        with torch.no_grad():
            attn.wq.weight.mul_(7.0)
            attn.wk.weight.mul_(3.0)
        assert torch.allclose(attn(x, inputs), y0, atol=1e-4) == invariant
        if qk_norm == "none":
            assert attn.q_norm is None and attn.k_norm is None
        else:  # "head" normalises each head (16 wide), "full" the whole projection
            q_width, k_width = (16, 16) if mode == "head" else (64, 32)
            assert attn.q_norm.weight.shape == (q_width,)
            assert attn.k_norm.weight.shape == (k_width,)


def test_sliding_window_equals_truncated_context():
    torch.manual_seed(0)
    # one layer: with more, the receptive field grows by the window per layer
    model = Transformer(cfg(sliding_window=3, n_layers=1)).eval()
    ids = torch.randint(0, 97, (1, 10))
    full = model(ids)
    # last token sees tokens 7..9 only; RoPE is relative so positions can restart at 0
    torch.testing.assert_close(full[:, -1], model(ids[:, -3:])[:, -1], atol=1e-5, rtol=0)
    plain = Transformer(cfg(n_layers=1))
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(ids)[:, -1], full[:, -1], atol=1e-4)


def test_document_mask_equals_separate_sequences():
    torch.manual_seed(0)
    eos = 0
    model = Transformer(cfg(doc_mask_eos_id=eos, position="learned")).eval()
    a, b = torch.tensor([[5, 6, 7, eos]]), torch.tensor([[8, 9, 10]])
    packed = model(torch.cat([a, b], dim=1))
    plain = Transformer(cfg(position="learned")).eval()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(packed[:, :4], plain(a), atol=1e-5, rtol=0)
    # the second document sees only itself (positions keep counting, as in packed training)
    alone = plain.hidden_states(b, positions=torch.arange(4, 7))
    torch.testing.assert_close(packed[:, 4:], plain.logits(alone), atol=1e-5, rtol=0)
    assert not torch.allclose(plain(torch.cat([a, b], 1))[:, 4:], packed[:, 4:], atol=1e-4)


def test_dropout_only_in_training():
    model = Transformer(cfg(dropout=0.5))
    ids = torch.randint(0, 97, (1, 8))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))
    model.train()
    assert not torch.allclose(model(ids), model(ids))
