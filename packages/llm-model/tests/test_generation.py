import pytest
import torch

from llm_model import ModelConfig, Transformer
from llm_model.generation import generate, sample_next


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    c = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61)
    return Transformer(c).double().eval()


@pytest.mark.parametrize(
    "kw", [dict(), dict(position="alibi"), dict(position="learned", max_seq_len=64)]
)
def test_cached_equals_uncached_and_padding_is_invisible(kw):
    torch.manual_seed(0)
    c = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61, **kw)
    m = Transformer(c).double().eval()
    prompts = [[5, 9, 11, 3, 7], [2], [8, 8, 1]]
    cached = generate(m, prompts, 8)
    assert cached == generate(m, prompts, 8, use_cache=False)
    for prompt, row in zip(prompts, cached, strict=True):
        assert generate(m, [prompt], 8) == [row]  # alone, no padding
    # and greedy decoding really is argmax of the full forward
    seq = prompts[0] + cached[0][:3]
    assert cached[0][3] == m(torch.tensor([seq]))[0, -1].argmax().item()


def test_sampling_reproducible_and_eos_stops(model):
    prompts = [[1, 2, 3], [4]]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = generate(model, prompts, 6, temperature=1.0, top_k=10, top_p=0.9, generator=g1)
    b = generate(model, prompts, 6, temperature=1.0, top_k=10, top_p=0.9, generator=g2)
    assert a == b and all(len(r) == 6 for r in a)
    first = generate(model, [[1, 2, 3]], 1)[0][0]
    assert generate(model, [[1, 2, 3]], 5, eos_id=first) == [[first]]


def test_top_k_and_top_p_filter():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert picks == {0, 1}
    picks = {sample_next(logits, 1.0, top_p=0.8, generator=g).item() for _ in range(200)}
    assert picks == {0, 1}  # 0.5 + 0.3 reaches 0.8
    picks = {sample_next(logits, 1.0, top_p=0.81, generator=g).item() for _ in range(300)}
    assert picks == {0, 1, 2}
    assert sample_next(logits).item() == 0


def test_kv_cache_select_drops_rows_and_the_rest_decode_as_before(model):
    """new_kv_cache + KVCache.select (llm-eval's engine drops finished rows this way): after
    dropping row 1 and swapping the others, one more step gives each row's full-forward logits."""
    seqs = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    cache = model.new_kv_cache(3, 5)
    assert cache.k[0].dtype == torch.float64 and cache.k[0].shape[2] == 5
    with torch.no_grad():
        model.hidden_states(seqs, cache=cache)
        rows = torch.tensor([2, 0])
        cache.select(rows)
        nxt = torch.tensor([[13], [14]])
        h = model.hidden_states(nxt, cache=cache)
        full = model(torch.cat([seqs[rows], nxt], dim=1))[:, -1]
    torch.testing.assert_close(model.logits(h[:, -1]), full)
