"""fedllm judges: LLMs that grade generated answers (entry-point group ``fedllm.judges``)."""
