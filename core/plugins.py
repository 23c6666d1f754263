"""Plugin discovery and the run-scoped plugin manager.

Every component (built-in or third-party) is an entry point in a per-kind group whose name is
the component name, pointing at a :class:`Plugin` object. Discovery lists entry points without
importing them; a run imports and registers only the components its config names, so an
installed-but-broken plugin cannot break a run that does not use it.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy
from pydantic import BaseModel, ConfigDict

from . import hookspecs
from .errors import PluginLoadError, PluginNotFoundError

#: kind -> entry-point group. ``judge`` and ``backend`` components are looked up by the
#: evaluators and the engine, not registered as hook implementations.
GROUPS: dict[str, str] = {
    "algorithm": "fedllm.algorithms",
    "sampler": "fedllm.samplers",
    "dataset": "fedllm.datasets",
    "task": "fedllm.tasks",
    "peft": "fedllm.peft",
    "privacy": "fedllm.privacy",
    "evaluator": "fedllm.evaluators",
    "judge": "fedllm.judges",
    "backend": "fedllm.backends",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class PluginConfig(BaseModel):
    """Base of every component's config: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


@dataclass(frozen=True)
class Plugin:
    """What a component's entry point exports.

    ``factory(config)`` builds the object whose ``@hookimpl`` methods are registered for a
    run (often the class itself). ``Config`` validates the component's section of the run
    config; its field descriptions are the user documentation (``fedllm plugins show``).
    """

    kind: str
    name: str
    description: str
    factory: Callable[[Any], Any]
    Config: type[PluginConfig] = PluginConfig

    def __post_init__(self) -> None:
        if self.kind not in GROUPS:
            raise ValueError(f"Plugin kind {self.kind!r} is not one of {sorted(GROUPS)}")
        if not _NAME_RE.match(self.name):
            raise ValueError(f"Plugin name {self.name!r} must match {_NAME_RE.pattern}")

    def build(self, config: PluginConfig) -> Any:
        obj = self.factory(config)
        return obj


@dataclass
class PluginInfo:
    """One installed component as discovered (before or after import)."""

    kind: str
    name: str
    entry_point: str
    distribution: str
    version: str
    plugin: Plugin | None = None
    error: str | None = None
    details: str | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return "broken" if self.error else "ok"

    @property
    def description(self) -> str:
        return self.plugin.description if self.plugin else ""


def _entry_points(kind: str) -> list[md.EntryPoint]:
    eps = md.entry_points(group=GROUPS[kind])
    # Deduplicate (the same distribution can be seen twice on odd sys.path setups).
    seen: dict[str, md.EntryPoint] = {}
    for ep in eps:
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda e: e.name)


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


def installed_names(kind: str) -> list[str]:
    """Names of the installed components of ``kind``, without importing anything."""
    return [ep.name for ep in _entry_points(kind)]


def _import(kind: str, ep: md.EntryPoint) -> PluginInfo:
    dist, version = _dist_of(ep)
    info = PluginInfo(kind, ep.name, ep.value, dist, version)
    try:
        obj = ep.load()
        if not isinstance(obj, Plugin):
            raise TypeError(f"entry point must be a fedllm.Plugin, got {type(obj).__name__}")
        if obj.kind != kind or obj.name != ep.name:
            raise TypeError(
                f"entry point {kind}:{ep.name} exports Plugin(kind={obj.kind!r}, "
                f"name={obj.name!r}); the group and name must match"
            )
        info.plugin = obj
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal here
        info.error = f"{type(exc).__name__}: {exc}"
        info.details = traceback.format_exc()
    return info


def discover(kind: str | None = None) -> list[PluginInfo]:
    """Import every installed component (of ``kind``); broken ones carry their error."""
    kinds = [kind] if kind else list(GROUPS)
    return [_import(k, ep) for k in kinds for ep in _entry_points(k)]


def load(kind: str, name: str) -> PluginInfo:
    """Import one component, or raise a clear error (not installed / fails to import)."""
    if kind not in GROUPS:
        raise PluginNotFoundError(f"unknown plugin kind {kind!r}; kinds are {', '.join(GROUPS)}")
    name = name.strip().lower()
    eps = {ep.name: ep for ep in _entry_points(kind)}
    if name not in eps:
        available = sorted(eps)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PluginNotFoundError(
            f"{kind} {name!r} is not installed.{hint} Installed {kind} plugins: "
            f"{', '.join(available) or '(none)'} (entry-point group {GROUPS[kind]!r})."
        )
    info = _import(kind, eps[name])
    if info.error:
        raise PluginLoadError(
            f"{kind} {name!r} (entry point {info.entry_point!r} in distribution "
            f"{info.distribution} {info.version}) failed to load: {info.error}"
        )
    return info


# Firstresult hooks and the component kinds allowed to implement them ("core" = the engine's
# own defaults). Two owners of a firstresult hook would silently shadow each other.
OWNERS: dict[str, set[str]] = {
    "fedllm_load_dataset": {"dataset"},
    "fedllm_wrap_model": {"peft"},
    "fedllm_encode": {"task"},
    "fedllm_collate": {"task"},
    "fedllm_loss": {"task"},
    "fedllm_prompt": {"task"},
    "fedllm_local_steps": {"task"},
    "fedllm_local_update": {"core", "task"},
    "fedllm_cohorts": {"sampler"},
    "fedllm_sample": {"sampler", "algorithm"},
    "fedllm_aggregate": {"algorithm"},
    "fedllm_aggregation_weights": {"algorithm"},
}


class PluginConflictError(PluginLoadError):
    """A component implements a hook its kind may not own."""


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("fedllm")
    pm.add_hookspecs(hookspecs)
    return pm


def register(pm: pluggy.PluginManager, kind: str, name: str, obj: Any) -> None:
    """Register a component instance under ``kind:name`` and enforce hook ownership."""
    for hook_name, kinds in OWNERS.items():
        if hasattr(obj, hook_name) and kind not in kinds:
            raise PluginConflictError(
                f"{kind} {name!r} implements {hook_name}, which only {sorted(kinds)} "
                "components may implement"
            )
    pm.register(obj, name=f"{kind}:{name}")
    pm.check_pending()
