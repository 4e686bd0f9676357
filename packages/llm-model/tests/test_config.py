import dataclasses

import pytest

from llm_model import ModelConfig


def test_defaults_and_derived_sizes():
    c = ModelConfig(d_model=128, n_layers=2, n_heads=4)
    assert c.kv_heads == 4 and c.dim_per_head == 32 and c.rotary_dim == 32
    assert c.hidden_dim == 512  # int(8 * 128 / 3) = 341 rounded up to 256
    assert ModelConfig(d_model=128, n_layers=2, n_heads=4, activation="gelu").hidden_dim == 512
    assert ModelConfig(d_model=96, n_layers=1, n_heads=4, multiple_of=32).hidden_dim == 256
    assert ModelConfig(d_model=64, n_layers=1, n_heads=4, rotary_pct=0.25).rotary_dim == 4


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(n_heads=3), "n_heads"),
        (dict(n_kv_heads=3), "n_kv_heads"),
        (dict(n_kv_heads=0), "n_kv_heads"),
        (dict(activation="swish"), "activation"),
        (dict(norm="batchnorm"), "norm"),
        (dict(position="xpos"), "position"),
        (dict(norm_position="middle"), "norm_position"),
        (dict(init="xavier"), "init"),
        (dict(rotary_pct=0.0), "rotary_pct"),
        (dict(rotary_pct=0.3), "rotary_pct"),  # 0.3 * 32 = 9: odd
        (dict(d_model=0), "d_model"),
        (dict(dropout=1.0), "dropout"),
        (dict(z_loss=-1.0), "z_loss"),
        (dict(n_experts=4, moe_top_k=5), "moe_top_k"),
        (dict(sliding_window=-1), "sliding_window"),
        (dict(kernels="false"), "kernels"),  # a string would read as True
        (dict(tie_embeddings=1), "tie_embeddings"),
    ],
)
def test_bad_configs_name_the_field(overrides, field):
    base = dict(d_model=128, n_layers=2, n_heads=4)
    with pytest.raises(ValueError, match=f"ModelConfig.{field}="):
        ModelConfig(**{**base, **overrides})


def test_head_dim_may_differ_from_width():
    c = ModelConfig(d_model=96, n_layers=1, n_heads=4, head_dim=16)
    assert c.dim_per_head == 16


def test_omegaconf_round_trip():
    omegaconf = pytest.importorskip("omegaconf")
    from omegaconf import OmegaConf

    c = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, qk_norm="full")
    structured = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.structured(c))
    back = OmegaConf.to_object(structured)
    assert isinstance(back, ModelConfig) and back == c
    with pytest.raises(omegaconf.errors.ValidationError):
        structured.activation = "swish"  # Literal checked by OmegaConf too
    assert dataclasses.asdict(back)["n_kv_heads"] == 2
