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


@pytest.mark.parametrize("norm_position", ["pre", "post", "sublayer"])
@pytest.mark.parametrize("moe", [False, True])
def test_keep_returns_the_full_hidden_states_at_those_positions(norm_position, moe):
    """hidden_states(keep=) runs the last block's FFN and the final norm on the kept positions
    only: the same vectors as the full pass, gathered."""
    torch.manual_seed(0)
    extra = {"n_experts": 4, "moe_top_k": 2} if moe else {}
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=61, max_seq_len=16,
                         norm_position=norm_position, **extra)  # fmt: skip
    model = Transformer(config).eval()
    ids = torch.randint(61, (3, 12))
    keep = torch.tensor([[0, 0], [0, 11], [1, 5], [2, 3], [2, 4], [0, 6]])
    with torch.no_grad():
        full = model.hidden_states(ids)
        kept = model.hidden_states(ids, keep=keep)
    assert kept.shape == (len(keep), 32)
    torch.testing.assert_close(kept, full[keep[:, 0], keep[:, 1]], atol=1e-5, rtol=1e-5)
