import json

import pytest
import torch

from llm_model import ModelConfig, Transformer
from llm_model.hf import check_llama_compatible, export_hf, import_hf

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
