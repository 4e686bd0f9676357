import torch

from llm_model import ModelConfig, Transformer
from llm_model.counting import exact_flops_per_token, mean_keys_per_query


def test_mean_keys_per_query():
    assert mean_keys_per_query(4) == 2.5  # (1 + 2 + 3 + 4) / 4
    assert mean_keys_per_query(5, window=2) == (1 + 2 + 2 + 2 + 2) / 5
    assert mean_keys_per_query(5, window=8) == 3.0


def test_exact_flops_hand_calculation_gqa_and_window():
    c = ModelConfig(
        d_model=64, n_layers=2, n_heads=4, n_kv_heads=1, vocab_size=100, ffn_hidden=96,
        sliding_window=8,
    )  # fmt: skip
    with torch.device("meta"):
        model = Transformer(c)
    # matmuls: q,o 64x64; k,v 64x16 (one KV head); 3 FFN matrices 64x96; untied head 100x64
    matmul = 2 * (2 * 64 * 64 + 2 * 64 * 16 + 3 * 64 * 96) + 100 * 64
    t_eff = (8 * 9 / 2 + (32 - 8) * 8) / 32
    expected = 6 * matmul + 12 * 2 * 4 * 16 * t_eff
    assert exact_flops_per_token(model, 32) == expected
    assert model.flops_per_token(32, exact=True) == expected
    # llm-foundry: all params (incl. the input table and norms), full T, d_model
    assert model.flops_per_token(32) == 6 * model.num_params() + 12 * 2 * 64 * 32
