"""llm-tokenize."""
