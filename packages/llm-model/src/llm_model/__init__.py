"""llm-model."""
