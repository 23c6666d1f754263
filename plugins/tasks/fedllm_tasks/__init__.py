"""fedllm local training tasks."""
