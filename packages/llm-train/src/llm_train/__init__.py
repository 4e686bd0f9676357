"""llm-train."""
