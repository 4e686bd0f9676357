"""forward(positions=, attn_mask=): several continuations packed after one shared context (what
llm-eval uses to run each context once) give the logits of separate forward passes."""

import pytest
import torch

from llm_model import ModelConfig, Transformer


@pytest.mark.parametrize("position", ["rope", "learned", "alibi"])
def test_continuations_packed_after_a_context_match_separate_passes(position):
    torch.manual_seed(0)
    config = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97,
                         max_seq_len=32, position=position)  # fmt: skip
    model = Transformer(config).eval()
    ctx, a, b = torch.randint(97, (5,)), torch.randint(97, (3,)), torch.randint(97, (4,))
    packed = torch.cat([ctx, a, b])[None]
    positions = torch.tensor([*range(5), *range(5, 8), *range(5, 9)])[None]
    segment = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    mask = (segment[None, :] == 0) | (segment[None, :] == segment[:, None])  # (T, T)
    with torch.no_grad():
        got = model(packed, positions=positions, attn_mask=mask[None])[0]
        ref_a = model(torch.cat([ctx, a])[None])[0]
        ref_b = model(torch.cat([ctx, b])[None])[0]
    torch.testing.assert_close(got[:8], ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[8:], ref_b[5:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="KV cache"):
        from llm_model.attention import KVCache

        cache = KVCache(config, 1, 32, "cpu", torch.float32)
        model.hidden_states(packed, cache=cache, attn_mask=mask[None])


KEEP_CONFIGS = {
    "pre": {},
    "post": {"norm_position": "post"},
    "sublayer": {"norm_position": "sublayer"},
    "moe": {"n_experts": 4, "moe_top_k": 2},
    "gqa-qknorm-head": {"n_kv_heads": 2, "qk_norm": "head"},
    "qknorm-full": {"qk_norm": "full"},
    "learned": {"position": "learned"},
    "alibi": {"position": "alibi"},  # no subset path: runs in full, then gathered
    "window": {"sliding_window": 5},
}


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", list(KEEP_CONFIGS))
def test_keep_returns_the_full_hidden_states_at_those_positions(name, masked):
    """hidden_states(keep=) runs the last block's queries, FFN and norms on the kept positions
    only: the same vectors as the full pass, gathered (plain causal and with a packing mask)."""
    torch.manual_seed(0)
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=61, max_seq_len=16,
                         **KEEP_CONFIGS[name])  # fmt: skip
    model = Transformer(config).eval()
    ids = torch.randint(61, (3, 12))
    kw = {}
    if masked:  # rows of 2 segments: positions restart, a context then a continuation
        segment = torch.tensor([0] * 7 + [1] * 5)
        mask = (segment[None, :] == 0) | (segment[None, :] == segment[:, None])
        kw = {"positions": torch.tensor([*range(7), *range(7, 12)]).expand(3, 12),
              "attn_mask": mask.expand(3, 12, 12)}  # fmt: skip
    keep = torch.tensor([[2, 3], [0, 0], [0, 11], [1, 5], [2, 4], [0, 6]])  # any order
    with torch.no_grad():
        full = model.hidden_states(ids, **kw)
        kept = model.hidden_states(ids, keep=keep, **kw)
    assert kept.shape == (len(keep), 32)
    torch.testing.assert_close(kept, full[keep[:, 0], keep[:, 1]], atol=1e-5, rtol=1e-5)
