from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("streaming", reason="needs the [shards] extra")
pytest.importorskip("torch", reason="needs the [shards] extra")
from tokenizers import Tokenizer

from llm_data import InputError, tokenize_to_shards
from llm_data.training_data.shards import is_heldout


def _docs(curated_small, source):
    with gzip.open(curated_small / source / "00000.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def _read_samples(folder) -> np.ndarray:
    from streaming import StreamingDataset

    dataset = StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    samples = np.stack([dataset[i]["tokens"] for i in range(len(dataset))])
    del dataset
    return samples


def test_packs_documents_with_eos(shards, curated_small, tokenizer_json):
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.encode_special_tokens = True
    eos = tokenizer.token_to_id("<|endoftext|>")
    stats = shards["stats"]
    assert (stats["eos_id"], stats["dtype"], stats["sample_len"]) == (eos, "uint16", 33)
    for source in ("books", "code"):
        kept = [d for d in _docs(curated_small, source) if not is_heldout(source, d["id"], 0.2, 3)]
        stream = []
        for doc in kept:
            stream += tokenizer.encode(doc["text"], add_special_tokens=False).ids + [eos]
        samples = _read_samples(shards["out"] / source)
        assert samples.dtype == np.uint16 and samples.shape == (len(stream) // 33, 33)
        np.testing.assert_array_equal(samples.reshape(-1), stream[: samples.size])
        s = stats["sources"][source]
        assert (s["docs"], s["samples"]) == (len(kept), len(stream) // 33)
        assert s["tokens"] + s["tokens_dropped"] == len(stream)


def test_heldout_split_is_deterministic_and_excluded(shards, curated_small):
    heldout = [json.loads(x) for x in (shards["out"] / "heldout.jsonl").read_text().splitlines()]
    expected = [
        (source, d["id"])
        for source in ("books", "code")
        for d in _docs(curated_small, source)
        if is_heldout(source, d["id"], 0.2, 3)
    ]
    assert [(h["source"], h["id"]) for h in heldout] == expected
    assert len(expected) == sum(s["heldout_docs"] for s in shards["stats"]["sources"].values())
    assert len(expected) >= 1  # seed 3 holds out at least one of the 10 documents
    assert set(heldout[0]) == {"id", "text", "source"}


def test_index_has_hashes_and_stats_file(shards):
    index = json.loads((shards["out"] / "books" / "index.json").read_text())
    assert set(index["shards"][0]["raw_data"]["hashes"]) == {"sha1", "xxh64"}
    saved = json.loads((shards["out"] / "shard_stats.json").read_text())
    assert saved == shards["stats"]


def test_tokenizer_without_protocol_is_an_error(tmp_path, curated_small, tokenizer_json):
    with pytest.raises(TypeError, match="encode_batch.*eos_id.*vocab_size"):
        tokenize_to_shards(curated_small, tokenizer_json, tmp_path / "out", seq_len=8)
    assert not (tmp_path / "out").exists()


def test_special_token_text_in_a_document_is_not_eos(tmp_path, tokenizer):
    docs = ["code that prints <|endoftext|> as a string", "a second document"]
    (tmp_path / "cur" / "code").mkdir(parents=True)
    (tmp_path / "cur" / "code" / "a.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(docs))
    )
    stats = tokenize_to_shards(
        tmp_path / "cur", tokenizer, tmp_path / "out", seq_len=7, heldout_fraction=0.0
    )
    samples = _read_samples(tmp_path / "out" / "code").reshape(-1).tolist()
    stream = [i for ids in tokenizer.encode_batch(docs) for i in [*ids, tokenizer.eos_id]]
    assert samples == stream[: len(samples)] and stats["sources"]["code"]["tokens_dropped"] < 8
    eos = [k for k, i in enumerate(stream) if i == tokenizer.eos_id]
    assert eos == [len(tokenizer.encode_batch(docs[:1])[0]), len(stream) - 1]


def test_bad_record_names_file_and_line(tmp_path, tokenizer):
    (tmp_path / "cur" / "web").mkdir(parents=True)
    (tmp_path / "cur" / "web" / "a.jsonl").write_text('{"id": "1", "text": "ok"}\n{"id": "2"}\n')
    with pytest.raises(InputError, match=r"a\.jsonl:2: "):
        tokenize_to_shards(tmp_path / "cur", tokenizer, tmp_path / "out", seq_len=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_dirs_of_dead_processes_are_removed(tmp_path, curated_small, tokenizer):
    host = socket.gethostname()
    stale = tmp_path / f".out.tmp-{host}-{_dead_pid()}-0123abcd"
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-0123abcd"
    other_host = tmp_path / f".out.tmp-elsewhere-{_dead_pid()}-0123abcd"
    for folder in (stale, live, other_host):
        (folder / "books").mkdir(parents=True)
    tokenize_to_shards(curated_small, tokenizer, tmp_path / "out", seq_len=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other_host.name])


def test_heldout_records_keep_the_language_label(tmp_path, tokenizer):
    """Held-out web pages carry their language (for bits per byte per language); documents
    without a label (books, code) carry none."""
    web = [("de", "Der Hund läuft über die Straße."), ("fr", "Le chien court dans la rue.")]
    (tmp_path / "cur" / "web").mkdir(parents=True)
    (tmp_path / "cur" / "web" / "a.jsonl").write_text(
        "".join(
            json.dumps({"id": f"w{i}", "text": t, "metadata": {"language": lang}}) + "\n"
            for i, (lang, t) in enumerate(web * 10)
        )
        + json.dumps({"id": "plain", "text": "no metadata at all"})
        + "\n"
    )
    tokenize_to_shards(
        tmp_path / "cur", tokenizer, tmp_path / "out", seq_len=7, heldout_fraction=0.5, seed=1
    )
    held = [json.loads(x) for x in (tmp_path / "out" / "heldout.jsonl").read_text().splitlines()]
    by_id = {f"w{i}": lang for i, (lang, _) in enumerate(web * 10)}
    labelled = [h for h in held if h["id"] != "plain"]
    assert labelled and all(h["language"] == by_id[h["id"]] for h in labelled)
    assert all("language" not in h for h in held if h["id"] == "plain")
