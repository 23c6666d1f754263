"""fedllm-bench's components pass their kinds' contract suites."""

from fedllm.testing.contracts import CommandContract, PresetContract


class TestBenchPresets(PresetContract):
    name = "fedllm-bench"


class TestBenchCommands(CommandContract):
    name = "bench"
