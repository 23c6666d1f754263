"""fedllm dataset plugins."""
