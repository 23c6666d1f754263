"""Benchmark suites: a grid of runs (rows × columns × seeds × replicas) and how to report it.

A suite is YAML (shipped ones: ``fedllm-bench/<name>``, from ``suites/<name>.yaml``; or any
file path)::

    title: Fed-ChatbotIT (FedLLM-Bench Table 3)
    preset: "fedllm-bench/{setup}-{method}"      # formatted with the row's and column's keys
    seeds: [0]
    set: [eval_every=0]                          # overrides for every run
    rows:                                        # the table's rows: methods
      - {label: Local training, method: local, group: local,
         replicas: [[algorithm.client=0], [algorithm.client=1]]}   # pooled with the seeds
      - {label: FedAvg, method: fedavg}
    columns:                                     # column groups: datasets / experiments
      - {label: Fed-ChatbotIT, setup: fed-chatbotit}
    metrics:                                     # table columns, per column group
      - {label: MT-Bench-1, key: mt-bench.turn_1, better: higher}
    compare: {baseline: Local training}          # margins of every row over this one

Every run is a *cell*: its preset, the suite's ``set``, the row's, column's and replica's
``set``, ``seed=<seed>``, and then the command line's ``--set``. A cell's id hashes all of that
(the preset's content included), so an edited suite or preset never reuses a run made for
another config.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fedllm.errors import ConfigError

_RESERVED = {"label", "set", "replicas", "group", "preset", "metrics"}


@dataclass
class Metric:
    label: str
    key: str
    better: str = "higher"  #: "higher" or "lower"
    scale: float = 1.0


@dataclass
class Cell:
    id: str
    row: str
    column: str
    group: str
    seed: int
    replica: int
    preset: str | None
    overrides: list[str]

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "column": self.column, "group": self.group,
                "seed": self.seed, "replica": self.replica, "preset": self.preset,
                "overrides": self.overrides}


@dataclass
class Suite:
    name: str
    title: str
    description: str
    rows: list[dict[str, Any]]
    columns: list[dict[str, Any]]
    metrics: dict[str, list[Metric]]  #: column label -> its metrics
    seeds: list[int]
    compare: dict[str, Any] | None
    cells: list[Cell] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40] or "x"


def shipped() -> dict[str, str]:
    """Shipped suite names -> one-line titles."""
    root = resources.files("fedllm_bench").joinpath("suites")
    out = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text("utf-8")) or {}
            out[f"fedllm-bench/{entry.name[:-5]}"] = str(data.get("title", ""))
    return out


def read(spec: str) -> tuple[str, dict[str, Any]]:
    """(name, mapping) of a shipped suite (``fedllm-bench/NAME``) or a suite file."""
    if spec.startswith("fedllm-bench/") and not Path(spec).exists():
        name = spec.split("/", 1)[1]
        entry = resources.files("fedllm_bench").joinpath("suites", f"{name}.yaml")
        if not entry.is_file():
            raise ConfigError(f"suite {spec!r} is not shipped; shipped suites: "
                              f"{', '.join(shipped())} (or give a suite YAML file)")
        return name, yaml.safe_load(entry.read_text("utf-8")) or {}
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"suite {spec!r}: no such file, and not a shipped suite "
                          f"({', '.join(shipped())})")
    try:
        data = yaml.safe_load(p.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"suite {spec!r} is not valid YAML: {exc}") from None
    return p.stem, data


def _list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of KEY=VALUE overrides, got {value!r}")
    return list(value)


def _metrics(raw: Any, where: str) -> list[Metric]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of {{label, key, better}}")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "key" not in m:
            raise ConfigError(f"{where}.{i}: expected {{label, key, better}}, got {m!r}")
        better = m.get("better", "higher")
        if better not in ("higher", "lower"):
            raise ConfigError(f"{where}.{i}.better: {better!r}; allowed: higher, lower")
        extra = set(m) - {"label", "key", "better", "scale"}
        if extra:
            raise ConfigError(f"{where}.{i}: unknown key(s) {sorted(extra)}; allowed: label, "
                              "key, better, scale")
        out.append(Metric(str(m.get("label", m["key"])), str(m["key"]), better,
                          float(m.get("scale", 1.0))))
    return out


def _preset(name: str | None) -> dict[str, Any] | None:
    """The preset's mapping (part of a cell's id: editing a preset makes new cells)."""
    if not name:
        return None
    from fedllm.presets import preset_config

    return preset_config(name)


def load(spec: str, seeds: list[int] | None = None,
         overrides: list[str] | tuple[str, ...] = ()) -> Suite:
    """Read a suite and expand its grid into cells."""
    name, data = read(spec)
    allowed = {"title", "description", "preset", "seeds", "set", "rows", "columns", "metrics",
               "compare", "curves"}
    extra = set(data) - allowed
    if extra:
        raise ConfigError(f"suite {spec!r}: unknown key(s) {sorted(extra)}; allowed: "
                          f"{', '.join(sorted(allowed))}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "label" in r
                                                         for r in rows):
        raise ConfigError(f"suite {spec!r}: rows must be a non-empty list of {{label, ...}}")
    columns = data.get("columns") or [{"label": ""}]
    if not all(isinstance(c, dict) and "label" in c for c in columns):
        raise ConfigError(f"suite {spec!r}: columns must be a list of {{label, ...}}")
    default_metrics = _metrics(data.get("metrics"), f"suite {name}: metrics") \
        if data.get("metrics") is not None else None
    metrics = {}
    for c in columns:
        m = _metrics(c["metrics"], f"suite {name}: columns[{c['label']}].metrics") \
            if "metrics" in c else default_metrics
        if m is None:
            raise ConfigError(f"suite {spec!r}: give metrics (for the suite or each column)")
        metrics[c["label"]] = m
    seeds = list(seeds) if seeds else list(data.get("seeds") or [0])
    suite = Suite(name=name, title=str(data.get("title", name)),
                  description=str(data.get("description", "")).strip(), rows=rows,
                  columns=columns, metrics=metrics, seeds=seeds, compare=data.get("compare"),
                  curves=list(data.get("curves") or []))
    if suite.compare and suite.compare.get("baseline") not in [r["label"] for r in rows]:
        raise ConfigError(f"suite {spec!r}: compare.baseline {suite.compare.get('baseline')!r} "
                          f"is not a row label ({', '.join(r['label'] for r in rows)})")
    common = _list(data.get("set"), f"suite {name}: set")
    for row in rows:
        for col in columns:
            template = row.get("preset", col.get("preset", data.get("preset")))
            keys = {**{k: v for k, v in col.items() if k not in _RESERVED},
                    **{k: v for k, v in row.items() if k not in _RESERVED}}
            try:
                preset = template.format(**keys) if template else None
            except KeyError as exc:
                raise ConfigError(f"suite {spec!r}: preset {template!r} uses {exc} but row "
                                  f"{row['label']!r} / column {col['label']!r} do not set it"
                                  ) from None
            replicas = row.get("replicas") or [[]]
            for seed in seeds:
                for i, rep in enumerate(replicas):
                    sets = [*common, *_list(col.get("set"), "column set"),
                            *_list(row.get("set"), "row set"),
                            *_list(rep, "replica"), f"seed={seed}", *overrides]
                    digest = hashlib.sha256(json.dumps(
                        [preset, _preset(preset), sets], sort_keys=True, default=str
                    ).encode()).hexdigest()[:8]
                    parts = [_slug(row["label"]), _slug(col["label"]) if col["label"] else "",
                             f"s{seed}", f"r{i}" if len(replicas) > 1 else "", digest]
                    cid = "-".join(p for p in parts if p)
                    suite.cells.append(Cell(cid, row["label"], col["label"],
                                            str(row.get("group", "FL")), seed, i, preset, sets))
    return suite
