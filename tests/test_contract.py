"""The core's own component, the in-process backend, passes the backend contract suite."""

from __future__ import annotations

from fedllm.testing.contracts import BackendContract


class TestInProcess(BackendContract):
    name = "in-process"
