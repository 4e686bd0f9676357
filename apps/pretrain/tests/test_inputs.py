"""The stage cache's inputs: what each stage's fingerprint covers besides its config."""

from __future__ import annotations

from llm_data.classifier_card import write_card
from pretrain.config import load_pretrain_config
from pretrain.inputs import inputs_hash

_CARD = {"labels": {"positive": "__label__positive", "negative": "__label__negative"},
         "sources": [], "counts": {}, "hyperparameters": {}, "metrics": {}}  # fmt: skip


def test_a_retrained_classifier_at_the_same_path_reruns_curation(tmp_path):
    model = tmp_path / "quality.bin"
    model.write_bytes(b"first model")
    write_card(model, _CARD)
    on = ["data.classifier.enabled=true", f"data.classifier.model={model}",
          "data.classifier.threshold=0.5"]  # fmt: skip
    config = load_pretrain_config(None, on)
    first = inputs_hash(config, tmp_path, "curate")
    assert first != inputs_hash(load_pretrain_config(None, []), tmp_path, "curate")
    model.write_bytes(b"second model")  # same path, new weights, new card
    write_card(model, _CARD)
    assert inputs_hash(config, tmp_path, "curate") != first
