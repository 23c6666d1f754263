"""fedllm evaluators."""
