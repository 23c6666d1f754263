"""Small helpers shared by the tests: run fedllm in-process on tiny configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

#: A few-seconds run on the embedded default.
QUICK = [
    "rounds=2", "clients_per_round=2", "train.local_steps=2", "train.batch_size=2",
    "checkpoint_every=1", "runtime.threads=1",
]


def run_quick(tmp_path: Path, *overrides: str, name: str = "r", until: int | None = None,
              config: dict[str, Any] | None = None):
    """Run the engine in-process; return the Engine (its run_dir, history, ctx)."""
    from fedllm.config import apply_override, resolve
    from fedllm.engine import Engine

    data: dict[str, Any] = dict(config or {})
    for o in [*QUICK, f"output_dir={tmp_path}", f"name={name}", *overrides]:
        apply_override(data, o)
    eng = Engine.new(resolve(data), console=Console(stderr=True, quiet=True), progress=False)
    eng.run(until_round=until)
    return eng
