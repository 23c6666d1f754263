"""Plugin discovery, loading, contract checks, and the one way the core calls a component.

Every component (built-in or third-party) is an entry point in its kind's group
(:data:`fedllm.contract.GROUPS`) whose name is the component name, pointing at a
:class:`Plugin`. Listing reads entry-point metadata without importing anything; a component
is imported when it is shown, listed in detail or used, and its module must import nothing
heavy (torch, transformers, datasets ... belong inside hooks).

A built component lives in its own pluggy ``PluginManager`` (pluggy validates its hooks against
the contract's hookspecs); :class:`Components` holds a run's components in config order and is
the only place hooks are called: :meth:`Components.call` for hooks one component answers,
:meth:`Components.each` for hooks every implementing component gets, in config order.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata as md
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import __version__
from .contract import GROUPS, HOOKS, KINDS, _Specs, allowed_hooks, capabilities
from .errors import PluginLoadError, PluginNotFoundError

__all__ = ["GROUPS", "Plugin", "PluginInfo", "RunComponent", "Components",
           "discover", "load", "installed_names", "build", "verify"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def __getattr__(name: str) -> Any:
    if name == "PluginConfig":  # imported on first use: it brings pydantic
        from .pluginconfig import PluginConfig

        return PluginConfig
    raise AttributeError(name)


@dataclass(frozen=True)
class Plugin:
    """What a component's entry point exports.

    ``factory(config)`` builds the component (usually its class, a subclass of its kind's
    contract class in :mod:`fedllm.contract`). ``Config`` validates the component's section of
    the run config; its field descriptions are the user documentation (``fedllm plugins show``).
    Without one, the component takes no options (command components have no config at all:
    they are not part of a run).
    """

    kind: str
    name: str
    description: str
    factory: Callable[[Any], Any]
    Config: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Plugin kind {self.kind!r} is not one of {sorted(KINDS)}")
        if not _NAME_RE.match(self.name):
            raise ValueError(f"Plugin name {self.name!r} must match {_NAME_RE.pattern}")
        if self.Config is None and self.kind != "command":
            from .pluginconfig import PluginConfig

            object.__setattr__(self, "Config", PluginConfig)


class PluginContractError(PluginLoadError):
    """A component implements a hook outside its kind's contract (or misspells one)."""


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
    warning: str | None = None

    @property
    def status(self) -> str:
        return "broken" if self.error else ("incompatible" if self.warning else "ok")

    @property
    def description(self) -> str:
        return self.plugin.description if self.plugin else ""

    @property
    def loaded(self) -> Plugin:
        """The plugin, for an info that loaded (else the load error)."""
        if self.plugin is None:
            raise PluginLoadError(f"{self.kind} {self.name!r} failed to load: {self.error}")
        return self.plugin


# --------------------------------------------------------------------------- discovery


def _all_entry_points() -> dict[str, list[md.EntryPoint]]:
    def stamp(p: str) -> int:
        try:
            return os.stat(p or ".").st_mtime_ns
        except OSError:
            return 0

    return _scan(tuple((p, stamp(p)) for p in sys.path))


@functools.lru_cache(maxsize=4)
def _scan(path: tuple[tuple[str, int], ...]) -> dict[str, list[md.EntryPoint]]:
    """Every fedllm entry point by group, from one scan of the installed metadata (cached per
    ``sys.path`` and its folders' mtimes, so a distribution installed later is seen).
    importlib.metadata keeps the first distribution of a name on the path, as imports do."""
    everything = md.entry_points()
    return {g: sorted(everything.select(group=g), key=lambda e: e.name)
            for g in GROUPS.values()}


def refresh() -> None:
    """Forget the scanned entry points (after installing a distribution in this process)."""
    _scan.cache_clear()


def _entry_points(kind: str) -> list[md.EntryPoint]:
    return _all_entry_points()[GROUPS[kind]]


def _dist_of(ep: md.EntryPoint) -> tuple[str, str, md.Distribution | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?", None
    key = _dist_key(dist)
    if key not in _NAME_VERSION:  # each read parses METADATA again: once per distribution
        meta = dist.metadata
        _NAME_VERSION[key] = (meta["Name"], meta["Version"])
    return (*_NAME_VERSION[key], dist)


#: per distribution (its metadata directory): (name, version) and the core-compatibility note
_NAME_VERSION: dict[str, tuple[str, str]] = {}
_COMPATIBILITY: dict[str, str | None] = {}


def _dist_key(dist: md.Distribution) -> str:
    """Where ``dist``'s metadata lives: one distribution's entry points share it."""
    return str(getattr(dist, "_path", id(dist)))


def installed_names(kind: str) -> list[str]:
    """Names of the installed components of ``kind``, without importing anything."""
    return [ep.name for ep in _entry_points(kind)]


def core_compatibility(dist: md.Distribution | None) -> str | None:
    """A warning when ``dist`` was built for another fedllm core version (or names none)."""
    if dist is None:
        return None
    key = _dist_key(dist)
    if key not in _COMPATIBILITY:
        _COMPATIBILITY[key] = _core_compatibility(dist)
    return _COMPATIBILITY[key]


def _core_compatibility(dist: md.Distribution) -> str | None:
    if dist.metadata["Name"] == "fedllm":
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.name != "fedllm" or req.marker is not None:
            continue
        if not str(req.specifier):
            return "declares no fedllm version range (depend on e.g. fedllm>=0.2,<0.3)"
        if not req.specifier.contains(__version__, prereleases=True):
            return f"built for fedllm {req.specifier}; this is fedllm {__version__}"
        return None
    return None


def _import(kind: str, ep: md.EntryPoint, compatibility: bool = True) -> PluginInfo:
    dist, version, d = _dist_of(ep)
    info = PluginInfo(kind, ep.name, ep.value, dist, version)
    try:
        obj = ep.load()
        if not isinstance(obj, Plugin):
            raise TypeError(f"entry point must be a fedllm.Plugin, got {type(obj).__name__}")
        if obj.kind != kind or obj.name != ep.name:
            raise TypeError(f"entry point {kind}:{ep.name} exports Plugin(kind={obj.kind!r}, "
                            f"name={obj.name!r}); the group and name must match")
        if isinstance(obj.factory, type):
            verify(kind, ep.name, obj.factory)
        info.plugin = obj
        if compatibility:
            info.warning = core_compatibility(d)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal here
        info.error = f"{type(exc).__name__}: {exc}"
        info.details = traceback.format_exc()
    return info


def discover(kind: str | None = None, compatibility: bool = True) -> list[PluginInfo]:
    """Import every installed component (of ``kind``); broken ones carry their error, and
    (with ``compatibility``) ones built for another core version a warning."""
    kinds = [kind] if kind else list(GROUPS)
    return [_import(k, ep, compatibility) for k in kinds for ep in _entry_points(k)]


def suggest(name: str, choices: list[str]) -> str:
    """`` Did you mean 'x'?`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def load(kind: str, name: str) -> PluginInfo:
    """Import one component, or raise a clear error (not installed / fails to import)."""
    if kind not in GROUPS:
        raise PluginNotFoundError(f"unknown plugin kind {kind!r}; kinds are {', '.join(GROUPS)}")
    name = name.strip().lower()
    eps = {ep.name: ep for ep in _entry_points(kind)}
    if name not in eps:
        available = sorted(eps)
        raise PluginNotFoundError(
            f"{kind} {name!r} is not installed.{suggest(name, available)} Installed {kind} "
            f"plugins: {', '.join(available) or '(none)'} (entry-point group {GROUPS[kind]!r}).")
    info = _import(kind, eps[name])
    if info.error:
        raise PluginLoadError(
            f"{kind} {name!r} (entry point {info.entry_point!r} in distribution "
            f"{info.distribution} {info.version}) failed to load: {info.error}")
    return info


# --------------------------------------------------------------------------- the contract


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("fedllm")
    pm.add_hookspecs(_Specs)
    return pm


def verify(kind: str, name: str, target: Any) -> pluggy.PluginManager:
    """Register ``target`` (a component or its class) in a fresh manager and check it against
    its kind's contract; return the manager. Raises :class:`PluginContractError`."""
    pm = make_manager()
    label = f"{kind} {name!r}"
    allowed = allowed_hooks(kind)
    unknown = [n for n in dir(target) if n.startswith("fedllm_") and n not in HOOKS]
    if unknown:
        raise PluginContractError(
            f"{label} implements {unknown[0]}, which is not a fedllm hook."
            f"{suggest(unknown[0], sorted(allowed))} A {kind} may implement: "
            f"{', '.join(sorted(allowed))}")
    try:
        pm.register(target, name=f"{kind}:{name}")
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginContractError(f"{label}: {exc}") from None
    for caller in pm.get_hookcallers(target) or []:
        if caller.name not in allowed:
            owner = HOOKS[caller.name].owner
            raise PluginContractError(
                f"{label} implements {caller.name}, which is a {owner} hook; a {kind} may "
                f"implement: {', '.join(sorted(allowed))}")
    for attr in dir(target):
        fn = getattr(target, attr, None) if attr in HOOKS else None
        if fn is None or getattr(fn, "__func__", fn) is HOOKS[attr].function:
            continue  # not a hook name, or the contract's own (inherited) declaration
        if pm.parse_hookimpl_opts(target, attr) is None:
            raise PluginContractError(f"{label} defines {attr} without @hookimpl, so it would "
                                      "never be called; mark it with @fedllm.hookimpl")
    return pm


# --------------------------------------------------------------------------- calling

_TRACE = os.environ.get("FEDLLM_TRACE_PLUGINS", "") not in ("", "0")


def set_tracing(on: bool) -> None:
    """Log every hook call with its component on stderr (``FEDLLM_TRACE_PLUGINS=1``)."""
    global _TRACE
    _TRACE = on


def _summary(v: Any, depth: int = 0) -> str:
    t = type(v).__name__
    if t in ("Tensor", "Parameter"):
        return f"{t}{list(v.shape)}"
    if isinstance(v, dict):
        if depth or len(v) > 6:
            return f"{{{len(v)} items}}"
        return "{" + ", ".join(f"{k}: {_summary(x, 1)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return f"{t}[{len(v)}]" if depth or len(v) > 6 else repr(v)[:80]
    if isinstance(v, (int, float, str, bool, type(None))):
        return repr(v)[:80]
    return f"<{t}>"


class RunComponent:
    """A built component of a run: its plugin, validated config, object and hook manager."""

    def __init__(self, info: PluginInfo, config: Any, obj: Any):
        self.info, self.config, self.obj = info, config, obj
        self.kind, self.name = info.kind, info.name
        self.pm = verify(self.kind, self.name, obj)
        self._hooks = {c.name for c in self.pm.get_hookcallers(obj) or []}
        self._check_capabilities()

    def __repr__(self) -> str:
        return f"<{self.kind}:{self.name}>"

    def implements(self, hook: str) -> bool:
        return hook in self._hooks

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call this component's implementation of ``hook`` (``None`` if it has none)."""
        if hook not in self._hooks:
            return None
        if not _TRACE:
            return getattr(self.pm.hook, hook)(**kwargs)
        args = ", ".join(f"{k}={_summary(v)}" for k, v in kwargs.items() if k != "ctx")
        print(f"fedllm trace → {self.kind}:{self.name}.{hook}({args})", file=sys.stderr)
        out = getattr(self.pm.hook, hook)(**kwargs)
        print(f"fedllm trace ← {self.kind}:{self.name}.{hook} = {_summary(out)}", file=sys.stderr)
        return out

    def cap(self, name: str) -> Any:
        """A capability of this component (its own value, or the contract's default)."""
        return getattr(self.obj, name, capabilities(self.kind)[name])

    def _check_capabilities(self) -> None:
        declared = capabilities(self.kind)
        if all(getattr(self.obj, cap, default) is default for cap, default in declared.items()):
            return  # contract defaults are valid by construction (and pydantic stays unloaded)
        import typing

        from pydantic import TypeAdapter, ValidationError

        hints = typing.get_type_hints(KINDS[self.kind], include_extras=False,
                                      globalns=vars(sys.modules["fedllm.contract"]))
        for cap in declared:
            value = getattr(self.obj, cap, None)
            try:
                TypeAdapter(hints[cap]).validate_python(value, strict=True)
            except ValidationError:
                raise PluginContractError(
                    f"{self.kind} {self.name!r}: capability {cap} = {value!r} is not a "
                    f"{hints[cap]}") from None


def build(info: PluginInfo, config: Any) -> RunComponent:
    """Build a component from its loaded plugin and validated config."""
    assert info.plugin is not None
    return RunComponent(info, config, info.plugin.factory(config))


class Components:
    """A run's components in registration order (dataset, peft, task, sampler, algorithm,
    privacy in config order, evaluators in config order, backend), and the calls into them."""

    def __init__(self, components: list[RunComponent]):
        self.all: list[RunComponent] = list(components)
        self._provider: dict[str, RunComponent | None] = {}

    def add(self, component: RunComponent) -> RunComponent:
        self.all.append(component)
        self._provider.clear()
        return component

    def of(self, kind: str) -> list[RunComponent]:
        return [c for c in self.all if c.kind == kind]

    def one(self, kind: str) -> RunComponent:
        found = self.of(kind)
        if not found:
            raise PluginLoadError(f"the run has no {kind} component")
        return found[0]

    def provider(self, hook: str) -> RunComponent | None:
        """The component that answers a **one** hook: the first kind in the hook's providers
        whose component implements it."""
        if hook not in self._provider:
            info = HOOKS[hook]
            found = None
            for kind in info.providers:
                found = next((c for c in self.of(kind) if c.implements(hook)), None)
                if found is not None:
                    break
            self._provider[hook] = found
        return self._provider[hook]

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a **one** hook on its provider; ``None`` when no component implements it."""
        c = self.provider(hook)
        return None if c is None else c.call(hook, **kwargs)

    def each(self, hook: str, kind: str | None = None,
             **kwargs: Any) -> list[tuple[RunComponent, Any]]:
        """Call an **each** hook on every component (of ``kind``) that implements it, in
        config order; returns ``(component, result)`` pairs."""
        pool = self.of(kind) if kind else self.all
        return [(c, c.call(hook, **kwargs)) for c in pool if c.implements(hook)]
