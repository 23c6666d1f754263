"""Small helpers shared by the tests: run fedllm in-process on tiny configs (the same helpers
plugin authors get from ``fedllm.testing``)."""

from fedllm.testing import QUICK, run_quick  # noqa: F401
