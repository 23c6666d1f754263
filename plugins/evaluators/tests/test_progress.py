"""Evaluators' progress bars: on a terminal they show; under --no-progress or in a log, not."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from fedllm_evaluators.progress import grade, progress


def _ctx(terminal: bool, show: bool = True):
    buf = io.StringIO()
    return SimpleNamespace(console=Console(file=buf, force_terminal=terminal, width=80),
                           progress=show), buf


def test_a_bar_on_a_terminal_only():
    for terminal, show, shown in ((True, True, True), (True, False, False),
                                  (False, True, False)):
        ctx, buf = _ctx(terminal, show)
        with progress(ctx, "vicuna: generating", 4) as update:
            for i in range(1, 5):
                update(i)
        assert ("vicuna: generating" in buf.getvalue()) is shown, (terminal, show)


def test_grade_reports_the_judge_calls():
    seen = []

    class Grader:
        def grade(self, prompts, repeats=1, on_progress=None):
            for i in range(len(prompts) * repeats):
                on_progress(i + 1, len(prompts) * repeats)
                seen.append(i)
            return [[{"rating": 5}] * repeats for _ in prompts]

    ctx, buf = _ctx(True)
    out = grade(ctx, Grader(), "mt-bench: judging", [("s", "u")] * 3, repeats=2)
    assert len(out) == 3 and len(seen) == 6
    assert "mt-bench: judging" in buf.getvalue()
