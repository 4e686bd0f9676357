"""llm-formats: the files one stage writes and another reads, one module per seam.

Standard library only, and it imports no sibling, so every package (torch-free llm-data included)
may import it. Modules, in pipeline order of the files they own:

- ``atomic``: atomic writes (temp file in the same folder, fsync, rename, fsync of the folder)
  and file hashes, for every writer below; ``jsonl``: the one JSON Lines reader.
- ``documents``: curated documents (``curated/<source>/*.jsonl.gz``).
- ``tokenizer``: ``tokenizer.json`` + ``tokenizer_card.json``, the EOS and special-token roles,
  the Hugging Face files of an export.
- ``shards`` and ``heldout``: ``shard_stats.json`` and ``heldout.jsonl`` beside the MDS shards.
- ``metrics``: ``metrics.jsonl`` records.
- ``checkpoint``: ``checkpoints/step_NNNNNN/`` and its ``manifest.json``.
- ``eval_items`` and ``eval_results``: eval task items, per-item records and ``results.json``.
- ``rundir``: where each of these lies in a run directory; ``device``: what ``auto`` means.
"""

from llm_formats.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "sha256_file"]
