import dataclasses
import subprocess
import sys

import pytest
import torch

from llm_model import PRESETS, Transformer, get_preset
from llm_model.counting import active_params
from llm_model.presets import meta_check

# Published parameter counts (Hugging Face checkpoints / papers) of the shapes the presets copy.
PUBLISHED = {
    "gpt2-124m": 124_439_808,  # openai-community/gpt2
    "gpt2-350m": 354_823_168,  # openai-community/gpt2-medium
    "gpt2-760m": 760_000_000,  # GPT-3 paper "Large" (nominal)
    "gpt2-1.3b": 1_315_575_808,  # EleutherAI/gpt-neo-1.3B (same shape, no q/k/v bias)
    "llama-1b": 1_235_814_400,  # meta-llama/Llama-3.2-1B
    "llama-3b": 3_212_749_824,  # meta-llama/Llama-3.2-3B
    "llama3-8b": 8_030_261_248,  # meta-llama/Llama-3.1-8B
    "llama3-70b": 70_553_706_496,  # meta-llama/Llama-3.1-70B
    "llama3-405b": 405_853_388_800,  # meta-llama/Llama-3.1-405B
    "llama-7b": 6_738_415_616,  # meta-llama/Llama-2-7b-hf
    "llama-13b": 13_015_864_320,  # meta-llama/Llama-2-13b-hf
    "mpt-7b": 6_649_286_656,  # mosaicml/mpt-7b
    "olmo2-1b": 1_484_916_736,  # allenai/OLMo-2-0425-1B
    "olmoe-1b-7b": 6_919_161_856,  # allenai/OLMoE-1B-7B-0924
}


def gpt2_hand(V, P, d, L):
    # embeddings + per block (qkvo 4d^2+4d, mlp 8d^2+5d, 2 LayerNorms 4d) + final LayerNorm
    return V * d + P * d + L * (12 * d * d + 13 * d) + 2 * d


def llama_hand(V, d, L, H, kv, ffn, tied, qk_norm=False):
    hd = d // H
    attn = 2 * d * d + 2 * d * kv * hd
    norms = 2 * d + (d + kv * hd if qk_norm else 0)
    return V * d * (1 if tied else 2) + L * (attn + 3 * d * ffn + norms) + d


HAND = {
    "gpt2-124m": gpt2_hand(50257, 1024, 768, 12),
    "gpt2-350m": gpt2_hand(50257, 1024, 1024, 24),
    "gpt2-760m": gpt2_hand(50257, 2048, 1536, 24),
    "gpt2-1.3b": gpt2_hand(50257, 2048, 2048, 24),
    "llama-1b": llama_hand(128256, 2048, 16, 32, 8, 8192, True),
    "llama-3b": llama_hand(128256, 3072, 28, 24, 8, 8192, True),
    "llama3-8b": llama_hand(128256, 4096, 32, 32, 8, 14336, False),
    "llama3-70b": llama_hand(128256, 8192, 80, 64, 8, 28672, False),
    "llama3-405b": llama_hand(128256, 16384, 126, 128, 8, 53248, False),
    "llama-7b": llama_hand(32000, 4096, 32, 32, 32, 11008, False),
    "llama-13b": llama_hand(32000, 5120, 40, 40, 40, 13824, False),
    # MPT: tied, no biases, LayerNorm weights only, GELU MLP 4d, ALiBi (no position table)
    "mpt-7b": 50432 * 4096 + 32 * (12 * 4096**2 + 2 * 4096) + 4096,
    "olmo2-1b": llama_hand(100352, 2048, 16, 16, 16, 8192, False, qk_norm=True),
}


def build(name):
    with torch.device("meta"):
        return Transformer(PRESETS[name])


@pytest.mark.parametrize("name", sorted(HAND))
def test_counts_match_hand_calculation(name):
    assert build(name).num_params() == HAND[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_published_sizes_within_1_percent(name):
    n = build(name).num_params()
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.01, n


@pytest.mark.parametrize("name", ["llama3-8b", "llama3-70b", "llama3-405b"])
def test_llama3_counts_are_exactly_the_published_ones(name):
    # Meta's checkpoints: e.g. 8B = 32 x (attention 41,943,040 + FFN 176,160,768 + norms 8,192)
    # + 2 x 128,256 x 4,096 (embedding and untied head) + the final norm's 4,096.
    assert build(name).num_params() == PUBLISHED[name]


def test_gpt2_124m_exact_and_non_embedding():
    model = build("gpt2-124m")
    assert model.num_params() == 124_439_808  # tied: the head shares the embedding
    assert model.num_params(exclude_embeddings=True) == 124_439_808 - 50257 * 768 - 1024 * 768
    # llm-foundry: 6N + 12 L d T
    assert model.flops_per_token(1024) == 6 * 124_439_808 + 12 * 12 * 768 * 1024


def test_moe_counts_active_params():
    model = build("olmoe-1b-7b")
    expert = 3 * 2048 * 1024
    assert active_params(model) == model.num_params() - 16 * 56 * expert
    assert abs(active_params(model) - 1.28e9) / 1.28e9 < 0.01  # OLMoE: 1.3B active (1.28B)
    assert model.flops_per_token(4096) == 6 * active_params(model) + 12 * 16 * 2048 * 4096


@pytest.mark.parametrize("name", ["debug", "gpt2-124m", "mpt-7b", "olmo2-1b", "moe-small"])
def test_forward_backward_on_meta(name):
    # two layers: the per-layer code is what is checked; full depth only costs time
    model = meta_check(dataclasses.replace(PRESETS[name], n_layers=2), seq_len=32)
    assert all(p.grad is not None and p.grad.is_meta for p in model.parameters())


def test_get_preset_overrides_and_errors():
    c = get_preset("debug", vocab_size=1000)
    assert c.vocab_size == 1000 and PRESETS["debug"].vocab_size == 512
    with pytest.raises(ValueError, match="known presets: .*gpt2-124m"):
        get_preset("gpt5")
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        get_preset("debug", widht=3)
    with pytest.raises(ValueError, match="ModelConfig.n_heads"):
        get_preset("debug", n_heads=5)


def test_meta_build_then_init_weights():
    with torch.device("meta"):
        model = Transformer(PRESETS["debug"])
    model.to_empty(device="cpu")
    model.init_weights()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    std = model.blocks[0].attn.wq.weight.std().item()
    assert abs(std - 0.02) < 0.002
    assert torch.equal(model.blocks[0].attn_norm.weight, torch.ones(128))


def test_cli_table():
    out = subprocess.run(
        [sys.executable, "-m", "llm_model.presets", "--seq-len", "1024", "debug", "gpt2-124m"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "gpt2-124m" in out and "124,439,808" in out
