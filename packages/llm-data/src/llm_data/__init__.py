"""llm-data."""
