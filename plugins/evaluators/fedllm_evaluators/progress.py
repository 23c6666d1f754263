"""Progress bars for long evaluations (generation, judging): rich, on the run's console
(stderr), and only when that console is a terminal and the run shows progress (not under
``--no-progress``, not in CI logs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def progress(ctx: Any, description: str,
             total: int | None) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total=None)``; a no-op when no bar is shown."""
    console = getattr(ctx, "console", None)
    if not (total and console is not None and getattr(ctx, "progress", True)
            and console.is_terminal):
        yield lambda done, total=None: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total: int | None = None) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def grade(ctx: Any, grader: Any, description: str, prompts: list, **kw: Any) -> list:
    """``grader.grade(prompts, **kw)`` with a progress bar over the judge calls it makes."""
    with progress(ctx, description, len(prompts) * kw.get("repeats", 1)) as update:
        return grader.grade(prompts, on_progress=update, **kw)
