"""Fixtures of the evaluator tests (helpers live in evalkit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make evalkit importable

from evalkit import FakeJudge  # noqa: E402


@pytest.fixture
def fake_judge(monkeypatch):
    fj = FakeJudge()
    monkeypatch.setenv("FAKE_JUDGE_KEY", fj.key)
    yield fj
    fj.server.shutdown()
    fj.server.server_close()


@pytest.fixture(scope="session")
def tiny_ctx(tmp_path_factory):
    """A RunContext with the tiny model wrapped by LoRA (no dataset): what an evaluator sees."""
    from rich.console import Console

    from fedllm.config import resolve
    from fedllm.context import build_context, load_runtime

    resolved = resolve({"runtime": {"threads": 1, "device": "cpu"}, "evaluators": []})
    ctx = build_context(resolved, console=Console(stderr=True, quiet=True))
    load_runtime(ctx)
    ctx.model.eval()
    return ctx


@pytest.fixture
def ctx(tiny_ctx, tmp_path):
    tiny_ctx.run_dir = tmp_path / "run"
    tiny_ctx.run_dir.mkdir()
    return tiny_ctx

