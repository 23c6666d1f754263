"""Run a suite's cells resumably: a finished cell is never rerun, an interrupted one resumes.

Each cell is one ordinary run directory ``<out>/runs/<cell id>/``: finished when its final
adapter exists (the engine writes it atomically after the last round), interrupted when the
directory exists without it (the cell continues from its last checkpoint, exactly as
``fedllm run --resume`` does), new otherwise.

By default cells run in this process, through the same two calls ``fedllm run`` and
``fedllm run --resume`` make (``Engine.new(resolve(config))`` / ``Engine.resume(run_dir)``):
torch and the libraries load once for the grid, not once per cell (on a small CPU that import
alone costs ~15 s a cell). ``isolate=True`` runs every cell as a ``fedllm run`` subprocess
instead: a crash or an out-of-memory kill then loses one cell, not the grid, and a big model's
memory goes back to the system between cells.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedllm.errors import FedLLMError

from .suite import Cell, Suite


def run_dir(out: Path, cell: Cell) -> Path:
    return out / "runs" / cell.id


def finished(path: Path) -> bool:
    return (path / "adapter").is_dir() or (path / "adapters").is_dir()


def status(out: Path, cell: Cell) -> str:
    p = run_dir(out, cell)
    if finished(p):
        return "done"
    return "interrupted" if (p / "config.yaml").is_file() else "new"


def cell_config(out: Path, cell: Cell) -> dict[str, Any]:
    """The cell's raw config: its preset, its overrides, and its run directory's place."""
    from fedllm.config import build_config
    from fedllm.presets import preset_config

    base = preset_config(cell.preset) if cell.preset else {}
    return build_config(None, [*cell.overrides, f"name={cell.id}",
                               f"output_dir={out / 'runs'}"], base=base)


def resolve_cells(suite: Suite, out: Path) -> None:
    """Validate every cell's config up front (all problems at once, nothing run yet)."""
    from fedllm.config import resolve

    problems = []
    for cell in suite.cells:
        try:
            resolve(cell_config(out, cell))
        except FedLLMError as exc:
            problems.append(f"cell {cell.id} ({cell.row} / {cell.column or '-'} / seed "
                            f"{cell.seed}): {exc}")
    if problems:
        raise FedLLMError("the suite cannot run:\n" + "\n".join(problems))


def _in_process(out: Path, cell: Cell, state: str, console, progress: bool) -> None:
    from fedllm.config import resolve
    from fedllm.engine import Engine

    if state == "interrupted":
        engine = Engine.resume(run_dir(out, cell), console=console, progress=progress)
    else:
        engine = Engine.new(resolve(cell_config(out, cell)), console=console,
                            progress=progress)
    try:
        engine.run()
    finally:
        del engine
        gc.unfreeze()  # load_runtime froze this cell's objects; let the next cell free them
        gc.collect()


def _subprocess(out: Path, cell: Cell, state: str, progress: bool) -> None:
    cmd = [sys.executable, "-m", "fedllm.cli.main", "run"]
    if state == "interrupted":
        cmd += ["--resume", str(run_dir(out, cell))]
    else:
        cfg = out / "cells" / f"{cell.id}.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        import yaml

        cfg.write_text(yaml.safe_dump(cell_config(out, cell), sort_keys=False))
        cmd += [str(cfg)]
    if not progress:
        cmd.append("--no-progress")
    res = subprocess.run(cmd)
    if res.returncode:
        raise FedLLMError(f"`{' '.join(cmd)}` exited with {res.returncode}")


def run_suite(suite: Suite, out: Path, console, *, isolate: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run every cell not finished yet; returns the manifest (also ``<out>/bench.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    resolve_cells(suite, out)
    manifest: dict[str, Any] = {"suite": suite.name, "title": suite.title, "cells": []}
    for i, cell in enumerate(suite.cells, 1):
        state = status(out, cell)
        label = (f"[{i}/{len(suite.cells)}] {cell.row}" + (f" / {cell.column}" if cell.column
                                                           else "") + f", seed {cell.seed}"
                 + (f", replica {cell.replica}" if cell.replica else ""))
        entry = {**cell.spec(), "run_dir": str(run_dir(out, cell))}
        if state == "done":
            console.print(f"{label}: done already ({cell.id})", highlight=False)
            entry["status"] = "done"
            manifest["cells"].append(entry)
            continue
        console.print(f"{label}: {'resuming' if state == 'interrupted' else 'running'} "
                      f"({cell.id})", highlight=False)
        t0 = time.perf_counter()
        try:
            if isolate:
                _subprocess(out, cell, state, progress)
            else:
                _in_process(out, cell, state, console, progress)
            entry["status"] = "done"
        except FedLLMError as exc:
            entry["status"] = "failed"
            entry["error"] = str(exc)
            console.print(f"[red]{label}: failed[/]: {exc}", highlight=False)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        manifest["cells"].append(entry)
        (out / "bench.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "bench.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
