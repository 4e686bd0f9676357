"""Bits-per-byte sets from the held-out file: per source, and per language within a source."""

import json

from pretrain.config import PretrainConfig
from pretrain.stages import bpb_sets


def test_heldout_sets_per_source_and_per_language(tmp_path):
    docs = [
        {"id": "1", "text": "Der Hund", "source": "web", "language": "de"},
        {"id": "2", "text": "Le chien", "source": "web", "language": "fr"},
        {"id": "3", "text": "Die Katze", "source": "web", "language": "de"},
        {"id": "4", "text": "def f(): pass", "source": "code"},
        {"id": "5", "text": "To be or not", "source": "books", "language": "en"},
    ]
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    config = PretrainConfig()
    config.eval.bpb_sets = {}
    sets = bpb_sets(config, tmp_path)
    assert sets == {
        "heldout/web": ["Der Hund", "Le chien", "Die Katze"],
        "heldout/code": ["def f(): pass"],
        "heldout/books": ["To be or not"],
        # one language in a source says nothing more than the source set: no sub-set
        "heldout/web/de": ["Der Hund", "Die Katze"],
        "heldout/web/fr": ["Le chien"],
    }
