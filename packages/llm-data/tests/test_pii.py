from __future__ import annotations

import json

from datatrove.data import Document

from llm_data.config import PIIConfig
from llm_data.pii import PIIMasker

TEXT = (
    "Write to jane.doe@falcot.com or admin@debian.org. The server answers on 8.8.8.8, "
    "the router on 192.168.1.1 and localhost on 127.0.0.1. Call +1 650-253-0000 today."
)


def _run(masker: PIIMasker, *texts: str) -> list[Document]:
    docs = [Document(text=t, id=str(i), metadata={}) for i, t in enumerate(texts)]
    return list(masker.run(iter(docs)))


def test_masks_emails_and_public_ips_and_counts_them():
    masker = PIIMasker(PIIConfig())
    doc, clean = _run(masker, TEXT, "Nothing personal here.")
    assert "jane.doe@falcot.com" not in doc.text and "admin@debian.org" not in doc.text
    assert "8.8.8.8" not in doc.text
    assert "192.168.1.1" in doc.text and "127.0.0.1" in doc.text  # private IPs are not PII
    assert "650-253-0000" in doc.text  # phones are off by default
    assert doc.metadata["pii"] == {"email": 2, "ip": 1}
    assert "pii" not in clean.metadata
    stats = masker.stats.stats
    assert stats["pii_email"].total == 2 and stats["pii_ip"].total == 1
    assert stats["documents_with_pii"].total == 1 and stats["total"].total == 2


def test_phone_numbers_when_enabled():
    masker = PIIMasker(PIIConfig(phones=True))
    (doc,) = _run(masker, TEXT)
    assert "650-253-0000" not in doc.text and "<PHONE>" in doc.text
    assert doc.metadata["pii"] == {"email": 2, "ip": 1, "phone": 1}
    # A national number needs the region it is written for.
    local = "Ring til os på 030 901820 i dag."
    (no_region,) = _run(PIIMasker(PIIConfig(phones=True)), local)
    assert no_region.text == local
    (german,) = _run(PIIMasker(PIIConfig(phones=True, phone_region="DE")), local)
    assert german.text == "Ring til os på <PHONE> i dag."
    assert german.metadata["pii"] == {"phone": 1}
    # Integers in code are valid US numbers to libphonenumber; only formatted numbers count.
    code = "assertEqual(f(-2147483648), -715827882)  # or call (650) 253-0000"
    (masked,) = _run(PIIMasker(PIIConfig(phones=True, phone_region="US")), code)
    assert masked.text == "assertEqual(f(-2147483648), -715827882)  # or call <PHONE>"


def test_switches():
    (doc,) = _run(PIIMasker(PIIConfig(emails=False)), TEXT)
    assert "jane.doe@falcot.com" in doc.text and doc.metadata["pii"] == {"ip": 1}


def test_curation_stats_count_what_was_masked(tmp_path):
    from llm_data import CurationConfig, SourceConfig, run_curation

    docs = [{"id": "a", "text": TEXT}, {"id": "b", "text": "Nothing personal here."}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    source = SourceConfig(
        name="docs", path=str(tmp_path / "docs.jsonl"), format="jsonl", quality_filters=False
    )
    stats = run_curation(CurationConfig(sources=[source], output_dir=str(tmp_path / "out")))
    (row,) = [s for s in stats["docs"]["stages"] if s["stage"] == "PIIMasker"]
    assert row["removed"] == 0
    assert row["counted"] == {"documents_with_pii": 1, "pii_email": 2, "pii_ip": 1}
