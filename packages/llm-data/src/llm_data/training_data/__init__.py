"""llm-data's second half: token shards, the resumable loader and data mixtures.

Curation (the rest of `llm_data`) writes curated JSONL; this half turns it into MDS token shards
(`shards`, extra [shards]), reads them back as batches (`loader`, `mapped`) and resolves data
mixtures and seq_len schedules by step (`mixture`, numpy only). Nothing here is imported by
``import llm_data``: torch and streaming load only when `tokenize_to_shards` or `build_loader`
is first used.
"""
