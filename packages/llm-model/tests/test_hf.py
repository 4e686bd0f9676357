import json
import tempfile
from pathlib import Path

import pytest
import torch

from llm_model import ModelConfig, Transformer
from llm_model.hf import (
    HFExportWarning,
    check_llama_compatible,
    export_hf,
    import_hf,
    parse_size,
)

pytest.importorskip("safetensors", reason="needs the [hf] extra (safetensors)")


def small(**kw):
    base = dict(
        d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=101, max_seq_len=64,
        ffn_hidden=96, rope_theta=500000.0, norm_eps=1e-5,
    )  # fmt: skip
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize("tied", [False, True])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, tied):
    transformers = pytest.importorskip("transformers")
    model = small(tie_embeddings=tied)
    with torch.no_grad():  # non-trivial norm weights so a name mix-up would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    export_hf(model, tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["num_key_value_heads"] == 2 and cfg["tie_word_embeddings"] == tied
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids = torch.randint(0, 101, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=1e-4)
    back = import_hf(tmp_path / "ckpt").eval()
    assert back.config == model.config
    torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)


def test_incompatible_configs_are_named():
    with pytest.raises(ValueError, match="ModelConfig.position='alibi'"):
        check_llama_compatible(ModelConfig(d_model=64, n_layers=1, n_heads=4, position="alibi"))
    with pytest.raises(ValueError, match="ModelConfig.qk_norm"):
        check_llama_compatible(ModelConfig(d_model=64, n_layers=1, n_heads=4, qk_norm="full"))


def test_all_incompatible_fields_in_one_error():
    config = ModelConfig(
        d_model=64, n_layers=1, n_heads=4, position="alibi", qk_norm="full", sliding_window=8
    )
    with pytest.raises(ValueError) as err:
        check_llama_compatible(config)
    for field in ("position='alibi'", "qk_norm='full'", "sliding_window=8"):
        assert f"ModelConfig.{field}" in str(err.value)


ROPE_SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    "llama3": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    },
}  # fmt: skip


def hf_llama(tmp_path, rope_scaling, **kw):
    """A random transformers Llama saved sharded (several safetensors files and an index)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=101, max_position_embeddings=64, rope_theta=10000.0,
        rms_norm_eps=1e-5, rope_scaling=rope_scaling, **kw,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "hf", max_shard_size="50KB", safe_serialization=True)
    return model


@pytest.mark.parametrize("kind", sorted(ROPE_SCALINGS))
def test_import_sharded_hf_with_rope_scaling_matches_transformers(tmp_path, kind):
    hf = hf_llama(tmp_path, ROPE_SCALINGS[kind])
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    ours = import_hf(tmp_path / "hf", kernels=False).eval()
    assert ours.config.rope_scaling == kind
    ids = torch.randint(0, 101, (1, 60))  # past the original context of 16
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)
        unscaled = import_hf(tmp_path / "hf", kernels=False, rope_scaling="none").eval()
        assert (unscaled(ids) - hf(ids).logits).abs().max() > 1e-3  # scaling matters here
    export_hf(ours, tmp_path / "again", eos_token_id=0)
    cfg = json.loads((tmp_path / "again" / "config.json").read_text())
    assert cfg["rope_scaling"] == ROPE_SCALINGS[kind] | {
        k: v for k, v in cfg["rope_scaling"].items() if k in ("beta_fast", "beta_slow")
    }
    assert import_hf(tmp_path / "again", kernels=False).config == ours.config


@pytest.mark.parametrize(
    ("rope_scaling", "message"),
    [
        ({"rope_type": "dynamic", "factor": 2.0}, "type 'dynamic' is not supported"),
        ({"rope_type": "longrope", "factor": 2.0}, "type 'longrope' is not supported"),
        ({"rope_type": "yarn", "factor": 2.0, "mscale": 0.7}, "rope_scaling.mscale"),
        ({"rope_type": "llama3", "factor": 8.0}, "lacks 'high_freq_factor'"),
    ],
)
def test_unsupported_rope_scaling_is_refused_by_name(tmp_path, rope_scaling, message):
    cfg = {
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 4, "vocab_size": 101, "intermediate_size": 96,
        "rope_scaling": rope_scaling, "hidden_act": "gelu",
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message) as err:
        import_hf(tmp_path)
    assert "hidden_act='gelu'" in str(err.value)  # every problem in the one error
    assert str(tmp_path / "config.json") in str(err.value)


def test_export_writes_special_token_ids_and_shards(tmp_path):
    model = small()
    export_hf(model, tmp_path / "ckpt", bos_token_id=0, eos_token_id=0, shard_size="30KB")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    gen = json.loads((tmp_path / "ckpt" / "generation_config.json").read_text())
    assert cfg["eos_token_id"] == gen["eos_token_id"] == 0 and cfg["bos_token_id"] == 0
    index = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    ids = torch.randint(0, 101, (1, 9))
    back = import_hf(tmp_path / "ckpt").eval()
    torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)


def test_document_masking_export_warns():
    model = small(doc_mask_eos_id=3)
    with pytest.warns(HFExportWarning, match="doc_mask_eos_id=3"):
        export_hf(model, Path(tempfile.mkdtemp()) / "ckpt")
    with pytest.raises(ValueError, match="strict"):
        export_hf(model, Path(tempfile.mkdtemp()) / "ckpt", strict=True)


def test_import_olmo2_from_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Olmo2Config(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=101, max_position_embeddings=64, rms_norm_eps=1e-6,
    )  # fmt: skip
    hf = transformers.Olmo2ForCausalLM(config).eval()
    with torch.no_grad():  # transformers initialises norms to ones: make a mix-up show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="50KB")
    ours = import_hf(tmp_path / "hf", kernels=False).eval()
    assert (ours.config.norm_position, ours.config.qk_norm) == ("sublayer", "full")
    ids = torch.randint(0, 101, (2, 15))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5MB") == 1_500_000 and parse_size("1234") == 1234
    with pytest.raises(ValueError, match="'5 gigs'"):
        parse_size("5 gigs")
