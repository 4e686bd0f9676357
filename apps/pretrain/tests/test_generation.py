"""llm-eval's generation engine on our Transformer (its preallocated KV cache): greedy outputs
equal a no-cache, unbatched reference decoding."""

import torch

from llm_eval.generation import KVCacheDecoder, decoder_for, generate
from llm_model import ModelConfig, Transformer


class Ids:  # a tokenizer over raw ids: the engine only needs eos_id and decode
    eos_id, vocab_size = 0, 61

    def decode(self, ids):
        return " ".join(map(str, ids))


def _reference(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
            if ids[-1] == 0:
                break
    return ids[len(prompt) :]


def test_engine_on_transformer_equals_no_cache_reference():
    torch.manual_seed(0)
    config = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61)
    model = Transformer(config).double().eval()
    assert isinstance(decoder_for(model), KVCacheDecoder)
    prompts = [[5, 9, 11, 3, 7, 1, 2], [2], [8, 8, 1], [4, 4, 4, 4]]
    max_tokens = [10, 3, 7, 10]
    out = generate(model, Ids(), prompts, max_tokens=max_tokens, max_seq_len=64, batch_size=4)
    for prompt, n, gen in zip(prompts, max_tokens, out, strict=True):
        assert gen.tokens == _reference(model, prompt, n)
