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


def test_stages_read_the_eos_the_card_records(tmp_path):
    """`tokenizer.eos_token='<eos>'` trains a tokenizer without <|endoftext|>; the shards stage
    must read the card's EOS (it used the default one and failed)."""
    import gzip

    from streaming import StreamingDataset

    from pretrain.config import load_pretrain_config
    from pretrain.stages import shards, tokenizer

    docs = ["the cat sat on the mat", "to be or not to be"]
    (tmp_path / "curated" / "code").mkdir(parents=True)
    with gzip.open(tmp_path / "curated" / "code" / "00000.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(docs * 5))
    overrides = ["tokenizer.eos_token=<eos>", "tokenizer.vocab_size=300", "shards.seq_len=8",
                 "shards.heldout_fraction=0.0"]  # fmt: skip
    config = load_pretrain_config(None, overrides)
    tokenizer(config, tmp_path)
    shards(config, tmp_path)
    tok = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert (tok.eos_token, tok.hf.token_to_id(DEFAULT_EOS_TOKEN)) == ("<eos>", None)
    dataset = StreamingDataset(local=str(tmp_path / "shards" / "code"), shuffle=False, batch_size=1)
    ids = [int(t) for i in range(len(dataset)) for t in dataset[i]["tokens"]]
    first = tok.encode(docs[0])
    assert ids[: len(first) + 1] == [*first, tok.hf.token_to_id("<eos>")]
