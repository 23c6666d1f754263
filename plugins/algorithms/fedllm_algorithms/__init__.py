"""fedllm's built-in algorithms and samplers, each registered as its own entry point."""
