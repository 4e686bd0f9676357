"""llm-kernels."""
