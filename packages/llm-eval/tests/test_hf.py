"""The [hf] adapter: a transformers causal LM and tokenizer scored by the same code."""

import pytest
import torch

from llm_eval.adapters import load_model
from llm_eval.scoring import Request, score_requests

transformers = pytest.importorskip("transformers", reason="transformers (llm-eval[hf]) missing")


def test_hf_directory_loads_and_scores_like_a_direct_forward(tmp_path, bpe_tok):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(bpe_tok.raw.to_str())
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    fast.save_pretrained(tmp_path)
    config = transformers.LlamaConfig(
        vocab_size=bpe_tok.vocab_size, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    loaded = load_model(f"hf:{tmp_path}")
    assert loaded.max_seq_len == 64 and loaded.metadata["model"] == f"hf:{tmp_path}"
    tok = loaded.tokenizer
    assert tok.eos_id == bpe_tok.eos_id
    assert tok.encode_batch(["the cat sat"]) == bpe_tok.encode_batch(["the cat sat"])
    ctx, cont = tok.encode_batch(["the cat", " sat on the mat"])
    request = Request((tok.eos_id, *ctx), tuple(cont))
    with torch.no_grad():
        (score,) = score_requests(
            loaded.model, [request], batch_size=1, max_seq_len=64, device="cpu"
        )
        ids = torch.tensor([[*request.context, *request.continuation]])
        logits = loaded.model.model(ids).logits[0, :-1].log_softmax(-1)
        expected = logits[-len(cont) :].gather(1, ids[0, -len(cont) :, None]).sum()
    assert score.logprob == pytest.approx(expected.item(), abs=1e-5)
