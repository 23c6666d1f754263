"""fedllm-bench: FedLLM-Bench presets, benchmark grids, run reports and Hub pushes."""
