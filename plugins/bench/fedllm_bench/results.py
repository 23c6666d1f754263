"""Reading run directories without torch: the resolved config and the per-round records."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from fedllm.errors import RunDirError


def read_run(path: str | Path) -> dict[str, Any]:
    """``{"path", "name", "config", "records"}`` of a run directory."""
    p = Path(path)
    if not (p / "config.yaml").is_file() or not (p / "metrics.jsonl").is_file():
        raise RunDirError(f"{str(p)!r} is not a fedllm run directory (no config.yaml and "
                          "metrics.jsonl)")
    records = [json.loads(line) for line in (p / "metrics.jsonl").read_text("utf-8").splitlines()
               if line.strip()]
    return {"path": p, "name": p.name, "config": yaml.safe_load((p / "config.yaml").read_text())
            or {}, "records": records}


def round_number(records: list[dict[str, Any]], rec: dict[str, Any]) -> int:
    """The 1-based round of ``rec`` (fedllm 0.1 records counted rounds from 0)."""
    first = min((r.get("round", 0) for r in records), default=0)
    return rec.get("round", 0) + (1 if first == 0 else 0)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if isinstance(v, dict):  # e.g. per-client losses: their mean (each client counts once)
        vals = [x for x in (_number(y) for y in v.values()) if x is not None]
        return sum(vals) / len(vals) if vals else None
    return None


def metric_value(evals: dict[str, Any], key: str) -> float | None:
    """``evaluator.key[.subkey]`` from a final evaluation, averaged over cohorts; a mapping of
    numbers (e.g. ``heldout-loss.clients``) gives its mean."""
    vals = []
    for scores in evals.values():
        node: Any = scores
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        v = _number(node)
        if v is not None:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
