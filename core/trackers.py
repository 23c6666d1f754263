"""Experiment trackers (``runtime.trackers``) through accelerate's tracker API.

The run's ``Accelerator`` gets the trackers (``log_with``, logging under ``<run>/trackers``),
``init_trackers`` starts them with the resolved config once the run directory exists,
``log`` gets each round's record flattened to scalars (step = the round), ``end_training``
finishes them. TensorBoard, Weights & Biases, MLflow, Comet, Aim, ClearML, DVCLive, SwanLab,
Trackio: whatever accelerate supports and is installed. With ``trackers: []`` (the default)
nothing here runs and nothing is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import RunContext

#: record keys that are not per-round scalars (per-client detail, sampled ids)
_SKIP = {"cohorts", "clients", "sampled", "dropped"}


def problems(names: list[str]) -> list[str]:
    """Tracker names accelerate does not know, or whose package is not installed."""
    if not names:
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    known = sorted(LOGGER_TYPE_TO_CLASS)
    available = {str(t) for t in get_available_trackers()}
    out = []
    for n in names:
        if n == "all":
            continue
        if n not in LOGGER_TYPE_TO_CLASS:
            out.append(f"runtime.trackers: {n!r} is not a tracker accelerate supports; allowed: "
                       f"{', '.join(known)} or 'all'")
        elif n not in available:
            out.append(f"runtime.trackers: {n!r} is not installed here (pip install "
                       f"{'tensorboard' if n == 'tensorboard' else n.replace('_', '-')}); "
                       f"installed: {', '.join(sorted(available)) or 'none'}")
    return out


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float | int | str]:
    """Numeric leaves of a round record as ``a/b/c`` keys (per-client detail left out)."""
    out: dict[str, float | int | str] = {}
    for k, v in record.items():
        if k in _SKIP:
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, (int, float)):
            out[key] = v
    return out


def _hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as flat scalars (lists as JSON), as every tracker's init config accepts."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_hparams(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


class Trackers:
    """The run's trackers, or nothing (``runtime.trackers: []``)."""

    def __init__(self, ctx: RunContext):
        self.accelerator = None
        names = list(ctx.config.runtime.trackers)
        if not names:
            return
        if ctx.run_dir is None:
            raise RuntimeError("trackers start once the run directory exists (ctx.run_dir)")
        run_dir = Path(ctx.run_dir)
        from accelerate.tracking import filter_trackers

        acc = ctx.accelerator
        logging_dir = str(run_dir / "trackers")
        acc.project_configuration.logging_dir = logging_dir
        acc.log_with = filter_trackers(names, logging_dir)
        acc.trackers = []
        acc.init_trackers(run_dir.name, config=_hparams(ctx.resolved.to_dict()))
        self.accelerator = acc

    def log(self, record: dict[str, Any], step: int) -> None:
        if self.accelerator is not None:
            self.accelerator.log(flatten(record), step=step)

    def end(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()
            self.accelerator.trackers = []
            self.accelerator = None
