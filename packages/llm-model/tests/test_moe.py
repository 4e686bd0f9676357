import pytest
import torch
import torch.nn.functional as F

from llm_model import ModelConfig, Transformer
from llm_model.feedforward import activate
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


# --- sync-free dispatch against the implementation it replaced ---------------------------------


def loop_reference(m: MoE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dispatch this module had before: sort by expert, a Python loop over per-expert slices
    sized by a host-side bincount. Kept to show that outputs, gradients and aux losses agree."""
    shape, k = x.shape, m.config.moe_top_k
    x = x.reshape(-1, shape[-1])
    logits = m.router(x).double()
    probs = logits.softmax(-1)
    weights, experts = probs.topk(k, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).flatten().to(x.dtype)
    experts = experts.flatten()
    order = experts.argsort(stable=True)
    token = order // k
    xs, out, start = x[token], [], 0
    for e, n in enumerate(torch.bincount(experts, minlength=m.config.n_experts).tolist()):
        chunk = xs[start : start + n]
        up = chunk @ m.w3[e].t() if m.w3 is not None else None
        out.append(activate(m.config.activation, chunk @ m.w1[e].t(), up, False) @ m.w2[e].t())
        start += n
    out = torch.cat(out) * weights[order].unsqueeze(-1)
    y = torch.zeros_like(x).index_add_(0, token, out)
    if m.shared is not None:
        y = y + m.shared(x)
    frac = torch.bincount(experts, minlength=m.config.n_experts).double() / experts.numel()
    lb = m.config.n_experts * (frac * probs.mean(0)).sum()
    z = torch.logsumexp(logits, -1).pow(2).mean()
    return y.view(shape), lb, z


def outputs_and_grads(m: MoE, x: torch.Tensor, g: torch.Tensor, forward):
    x = x.clone().requires_grad_(True)
    y, lb, z = forward(m, x)
    ((y * g).sum() + lb + z).backward()  # the aux losses' gradients reach the router too
    grads = {"x": x.grad, **{n: p.grad for n, p in m.named_parameters()}}
    m.zero_grad(set_to_none=True)
    return y.detach(), lb.detach(), z.detach(), grads


def new_forward(m, x):
    return m(x), m.lb_loss, m.router_z_loss


CASES = [  # top-k, activation (gated or plain), shared experts
    (1, "swiglu", 0),
    (2, "swiglu", 0),
    (2, "gelu", 0),
    (1, "relu", 1),
    (2, "swiglu", 1),
]


@pytest.mark.parametrize("path", ["grouped", "tiled"])
@pytest.mark.parametrize(("top_k", "activation", "shared"), CASES)
def test_sync_free_dispatch_matches_the_loop_it_replaced(path, top_k, activation, shared):
    cfg = dict(moe_top_k=top_k, activation=activation, moe_shared_experts=shared)
    m64 = moe(**cfg)  # float64: the reference, and the tiled path at float64 precision
    m32 = moe(**cfg).float()  # float32: what torch._grouped_mm accepts on CPU
    torch.manual_seed(1)
    x, g = torch.randn(2, 2, 13, 32, dtype=torch.float64)  # 26 tokens: experts get uneven slices
    ref = outputs_and_grads(m64, x, g, loop_reference)
    assert m64._grouped_mm_dtype(x) is None and m32._grouped_mm_dtype(x.float()) == torch.float32
    with pytest.MonkeyPatch.context() as mp:
        calls = []
        grouped_mm = torch._grouped_mm
        mp.setattr(torch, "_grouped_mm", lambda *a, **kw: calls.append(1) or grouped_mm(*a, **kw))
        if path == "tiled":
            assert_same(outputs_and_grads(m64, x, g, new_forward), ref, rtol=1e-10, atol=1e-10)
            mp.setattr(m32, "_grouped_mm_dtype", lambda x: None)
        got = outputs_and_grads(m32, x.float(), g.float(), new_forward)
    assert len(calls) == (3 if m32.w3 is not None else 2) * (path == "grouped")
    assert_same(got, ref, rtol=1e-4, atol=1e-5)


def assert_same(got, ref, rtol, atol):
    """Output, aux losses and every gradient equal; ``atol`` is relative to each tensor's scale."""
    pairs = [*zip(got[:3], ref[:3], strict=True)]  # output, load-balancing loss, z-loss
    assert got[3].keys() == ref[3].keys()  # x and every parameter, each expert matrix included
    pairs += [(got[3][name], grad) for name, grad in ref[3].items()]
    names = ["y", "lb_loss", "router_z_loss", *ref[3]]
    for name, (a, b) in zip(names, pairs, strict=True):
        assert a is not None, name
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol * scale, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # grouped GEMM, tiled
def test_dynamo_traces_one_graph_without_breaks(dtype):
    m = moe(moe_shared_experts=1).to(dtype)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(m)(torch.randn(2, 9, 32, dtype=dtype))
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1


def test_moe_model_traces_without_graph_breaks():
    torch.manual_seed(0)
    c = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, n_experts=4, moe_every=1)
    ids = torch.randint(0, 50, (2, 16))
    torch._dynamo.reset()
    explain = torch._dynamo.explain(Transformer(c))(ids, ids)
    assert explain.graph_break_count == 0, explain.break_reasons


def test_path_choice_follows_device_dtype_and_alignment():
    m = moe().float()
    cpu = torch.empty(1, 32)
    assert m._grouped_mm_dtype(cpu) == torch.float32
    assert m._grouped_mm_dtype(cpu.bfloat16()) == torch.bfloat16
    assert m._grouped_mm_dtype(cpu.double()) is None  # _grouped_mm has no float64
    assert m._grouped_mm_dtype(torch.empty(1, 32, device="meta")) == torch.float32
    with torch.autocast("cpu", torch.bfloat16):  # autocast does not cover _grouped_mm: done here
        assert m._grouped_mm_dtype(cpu) == torch.bfloat16
    odd = MoE(ModelConfig(d_model=30, n_layers=1, n_heads=3, n_experts=4, moe_ffn_hidden=42))
    assert odd._grouped_mm_dtype(torch.empty(1, 30)) is None  # rows not 16-byte aligned
    x = torch.randn(5, 30)
    assert odd(x).shape == x.shape


SM90_GPU = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] not in (9, 10),
    reason="torch._grouped_mm's sync-free kernel needs a CUDA GPU of sm90/sm100 (H100/H200/B200)",
)


def assert_close_relative(got, ref, tol):
    """bf16 against float64: error norm relative to the reference's norm, per tensor."""
    pairs = [*zip(got[:3], ref[:3], strict=True), *((got[3][n], g) for n, g in ref[3].items())]
    for a, b in pairs:
        assert ((a.double() - b).norm() / b.norm()).item() < tol


@pytest.mark.gpu
@SM90_GPU
def test_grouped_mm_on_gpu_matches_the_loop_without_a_host_sync():
    m = moe(moe_shared_experts=1).cuda()
    torch.manual_seed(1)
    x, g = torch.randn(2, 4, 64, 32, dtype=torch.float64, device="cuda")
    ref = outputs_and_grads(m, x, g, loop_reference)
    mb = moe(moe_shared_experts=1).cuda().bfloat16()
    assert mb._grouped_mm_dtype(x.bfloat16()) == torch.bfloat16
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a device-to-host copy or sync raises
    try:
        got = outputs_and_grads(mb, x.bfloat16(), g.bfloat16(), new_forward)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_close_relative(got, ref, tol=0.02)


@pytest.mark.gpu
@SM90_GPU
def test_compiled_fullgraph_on_gpu_matches_eager():
    m = moe(moe_shared_experts=1).cuda().bfloat16()
    x = torch.randn(4, 64, 32, device="cuda", dtype=torch.bfloat16)
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    y, ref = compiled(x).double(), m(x).double()
    assert ((y - ref).norm() / ref.norm()).item() < 0.02


@pytest.mark.parametrize("path", ["grouped", "tiled"])
@pytest.mark.parametrize("hot", [[0, 1, 2], [0, 1]])  # one expert idle; two take every token
def test_skewed_routing_empty_and_full_experts(path, hot):
    m32, m64 = moe().float(), moe()
    x = torch.randn(20, 32, dtype=torch.float64).abs()
    cold = [e for e in range(4) if e not in hot]
    with torch.no_grad():  # positive inputs: the hot experts' rows win, the cold ones' never do
        for m in (m32, m64):
            w = m.router.weight
            w[hot], w[cold] = w[hot].abs() + 1, -w[cold].abs() - 1
    g = torch.randn_like(x)
    ref = outputs_and_grads(m64, x, g, loop_reference)
    with pytest.MonkeyPatch.context() as mp:
        if path == "tiled":
            mp.setattr(m32, "_grouped_mm_dtype", lambda x: None)
        got = outputs_and_grads(m32, x.float(), g.float(), new_forward)
    assert_same(got, ref, rtol=1e-4, atol=1e-5)
    w1_grad = got[3]["w1"].flatten(1).abs().sum(1)
    assert (w1_grad[cold] == 0).all() and (w1_grad[hot] > 0).all()
