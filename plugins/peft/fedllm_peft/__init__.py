"""fedllm adapter methods, built on peft."""
