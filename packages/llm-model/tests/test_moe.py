import torch
import torch.nn.functional as F

from llm_model import ModelConfig, Transformer
from llm_model.moe import MoE


def moe(**kw):
    torch.manual_seed(0)
    base = dict(d_model=32, n_layers=1, n_heads=4, n_experts=4, moe_top_k=2, moe_ffn_hidden=48)
    return MoE(ModelConfig(**{**base, **kw})).double()


def naive(m: MoE, x):
    """Per-token loop: sum over the token's top-k experts of renormalised prob * expert(x)."""
    out = []
    for t in x.reshape(-1, x.shape[-1]):
        p = m.router(t).softmax(-1)
        w, idx = p.topk(m.config.moe_top_k)
        w = w / w.sum()
        y = sum(
            wi * (F.silu(t @ m.w1[e].T) * (t @ m.w3[e].T)) @ m.w2[e].T
            for wi, e in zip(w, idx.tolist(), strict=True)
        )
        if m.shared is not None:
            y = y + m.shared(t)
        out.append(y)
    return torch.stack(out).view(x.shape)


def test_dispatch_equals_per_token_loop():
    for shared in (0, 1):
        m = moe(moe_shared_experts=shared)
        x = torch.randn(3, 7, 32, dtype=torch.float64)
        torch.testing.assert_close(m(x), naive(m, x))


def test_load_balancing_loss_formula():
    m = moe()
    x = torch.randn(50, 32, dtype=torch.float64)
    m(x)
    probs = m.router(x).softmax(-1)
    top = probs.topk(2).indices
    frac = torch.stack([(top == e).sum() for e in range(4)]).double() / top.numel()
    torch.testing.assert_close(m.lb_loss, 4 * (frac * probs.mean(0)).sum())
    z = torch.logsumexp(m.router(x), -1).pow(2).mean()
    torch.testing.assert_close(m.router_z_loss, z)
    torch.testing.assert_close(m.aux_loss, 0.01 * m.lb_loss + 0.001 * z)
    with torch.no_grad():  # a uniform router balances perfectly: loss is exactly 1
        m.router.weight.zero_()
    m(x)
    torch.testing.assert_close(m.lb_loss.item(), 1.0)


def test_moe_model_loss_includes_aux_and_all_experts_get_grads():
    torch.manual_seed(0)
    c = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, n_experts=4, moe_every=2)
    model = Transformer(c)
    assert not isinstance(model.blocks[0].ffn, MoE) and isinstance(model.blocks[1].ffn, MoE)
    ids = torch.randint(0, 50, (4, 16))
    out = model(ids, ids)
    torch.testing.assert_close(out["loss"].detach(), out["ce"] + out["aux_loss"])
    out["loss"].backward()
    moe_layer = model.blocks[1].ffn
    assert moe_layer.router.weight.grad.abs().sum() > 0
    assert (moe_layer.w1.grad.flatten(1).abs().sum(1) > 0).all()  # 64 tokens reach every expert
