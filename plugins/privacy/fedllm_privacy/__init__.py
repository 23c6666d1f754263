"""fedllm differential-privacy plugins."""
