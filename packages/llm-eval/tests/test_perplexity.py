import math

import pytest
import torch

from llm_eval import bits_per_byte
from llm_eval.perplexity import encode_windows

TEXTS = ["To be, or not to be, that is the question.", "héllo 世界 😀", "", "x" * 37]


@pytest.mark.parametrize("seq_len", [1, 4, 16, 1000])
def test_uniform_model_is_log2_vocab_per_token(byte_tok, models, seq_len):
    result = bits_per_byte(models.Uniform(257), byte_tok, TEXTS, seq_len=seq_len, batch_size=3)
    n_bytes = sum(len(t.encode()) for t in TEXTS)
    assert result["tokens"] == n_bytes == result["bytes"]  # every byte predicted once
    assert result["bpb"] == pytest.approx(math.log2(257), rel=1e-6)
    assert result["nll_per_token"] == pytest.approx(math.log(257), rel=1e-6)


def test_uniform_model_with_bpe_tokenizer(bpe_tok, models):
    texts = ["the cat sat on the mat", "a dog 🐕 on a log, the end"]
    tokens = sum(len(ids) for ids in bpe_tok.encode_batch(texts))
    n_bytes = sum(len(t.encode()) for t in texts)
    result = bits_per_byte(models.Uniform(bpe_tok.vocab_size), bpe_tok, texts, seq_len=5)
    assert tokens < n_bytes
    assert result["tokens"] == tokens
    assert result["bpb"] == pytest.approx(tokens * math.log2(bpe_tok.vocab_size) / n_bytes)


def test_windows_are_non_overlapping(byte_tok):
    windows, n_bytes = encode_windows(byte_tok, ["abcdefg"], seq_len=3)
    ab = list(b"abcdefg")
    assert [(w.context, w.continuation) for w in windows] == [
        ((256,), tuple(ab[0:3])),
        ((ab[2],), tuple(ab[3:6])),
        ((ab[5],), tuple(ab[6:7])),
    ]
    assert n_bytes == 7


def test_matches_a_direct_unbatched_computation(byte_tok, models):
    model = models.CausalMean()
    text = "Friends, Romans, countrymen, lend me your ears"
    seq_len = 8
    tokens = torch.tensor([256, *text.encode()])
    nll = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, seq_len):
            window = tokens[start : start + seq_len + 1]
            logits = model(window[None, :-1])[0]
            nll += torch.nn.functional.cross_entropy(logits, window[1:], reduction="sum").item()
    model.train()
    for batch_size in (1, 4):
        result = bits_per_byte(model, byte_tok, [text], seq_len=seq_len, batch_size=batch_size)
        assert result["bpb"] == pytest.approx(nll / (math.log(2) * len(text)), rel=1e-5)
    assert model.training and model.drop.training


def test_errors(byte_tok, models):
    with pytest.raises(ValueError, match="seq_len"):
        bits_per_byte(models.Uniform(257), byte_tok, ["abc"], seq_len=0)
    with pytest.raises(ValueError, match="no bytes"):
        bits_per_byte(models.Uniform(257), byte_tok, [""], seq_len=4)
