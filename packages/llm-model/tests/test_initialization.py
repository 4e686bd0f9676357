import math

import pytest
import torch

from llm_model import ModelConfig, Transformer


def build(init):
    torch.manual_seed(0)
    c = ModelConfig(d_model=256, n_layers=4, n_heads=4, vocab_size=300, ffn_hidden=512, init=init)
    return Transformer(c)


@pytest.mark.parametrize("init", ["normal", "scaled", "mitchell"])
def test_init_stds(init):
    model = build(init)
    wq = model.blocks[2].attn.wq.weight
    wo = model.blocks[2].attn.wo.weight
    w2 = model.blocks[2].ffn.w2.weight
    if init == "normal":
        expected = (0.02, 0.02, 0.02)
    elif init == "scaled":
        expected = (0.02, 0.02 / math.sqrt(8), 0.02 / math.sqrt(8))
    else:  # mitchell: 1/sqrt(fan_in); outputs / sqrt(2 (layer + 1)); truncated at 3 std
        expected = (256**-0.5, 1 / math.sqrt(2 * 256 * 3), 1 / math.sqrt(2 * 512 * 3))
    for w, std in zip((wq, wo, w2), expected, strict=True):
        assert abs(w.std().item() - std) / std < 0.05, (init, w.std().item(), std)
    if init == "mitchell":
        assert wq.abs().max().item() <= 3 * 256**-0.5 + 1e-6
    assert torch.equal(model.blocks[0].attn_norm.weight, torch.ones(256))


def test_init_weights_is_reproducible_and_resets():
    model = build("scaled")
    torch.manual_seed(1)
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    torch.manual_seed(1)
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_meta_build_with_a_seed_equals_a_seeded_build():
    # One definition of the init: torch.manual_seed(s); Transformer(c) == meta + init_weights(s).
    c = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=100, ffn_hidden=128)
    torch.manual_seed(7)
    built = Transformer(c)
    with torch.device("meta"):
        meta = Transformer(c)
    meta.to_empty(device="cpu")
    meta.init_weights(seed=7)
    for (name, a), b in zip(built.state_dict().items(), meta.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    meta.init_weights(seed=8)  # another seed, other weights
    assert not torch.equal(meta.blocks[0].attn.wq.weight, built.blocks[0].attn.wq.weight)
