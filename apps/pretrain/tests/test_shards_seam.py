"""The shards stage and evaluation encode text with one tokenizer loader: llm_tokenize's."""

import json

import pytest

pytest.importorskip("streaming")
from llm_data import tokenize_to_shards
from llm_tokenize import DEFAULT_EOS_TOKEN, Tokenizer, TokenizerConfig, train_tokenizer


def test_shards_encode_special_token_text_like_llm_tokenize(tmp_path):
    from streaming import StreamingDataset

    docs = ["print('<|endoftext|>') ends a sample in GPT-2", "the second document"]
    config = TokenizerConfig(vocab_size=300, show_progress=False)
    train_tokenizer(docs * 20, config).save(tmp_path / "tokenizer.json")
    tok = Tokenizer.from_file(tmp_path / "tokenizer.json")  # what evaluation loads
    (tmp_path / "curated" / "code").mkdir(parents=True)
    (tmp_path / "curated" / "code" / "a.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(docs))
    )
    tokenize_to_shards(
        tmp_path / "curated", tok, tmp_path / "shards", seq_len=3, heldout_fraction=0.0
    )
    dataset = StreamingDataset(local=str(tmp_path / "shards" / "code"), shuffle=False, batch_size=1)
    shards = [int(t) for i in range(len(dataset)) for t in dataset[i]["tokens"]]
    first, second = tok.encode(docs[0]), tok.encode(docs[1])
    expected = [*first, tok.eos_id, *second, tok.eos_id]
    assert shards == expected[: len(shards)] and len(expected) - len(shards) < 4
    assert [i for i, t in enumerate(shards) if t == tok.eos_id] == [len(first)]
    assert tok.hf.token_to_id(DEFAULT_EOS_TOKEN) == tok.eos_id
