"""Presets: named run configs that distributions ship as data (kind ``preset``, entry-point group
``fedllm.presets``).

A preset's full name is ``<component>/<preset>``: the component (entry-point name) is the
namespace, its ``fedllm_presets()`` hook returns ``{preset: {"summary", "config"}}``. A preset is
only a starting mapping: ``fedllm run --preset NAME --set ...`` validates it with
:func:`fedllm.config.resolve` exactly like a config file, so a broken preset is reported like a
broken file (field, value, what is allowed).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, FedLLMError, PluginNotFoundError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class PresetInfo:
    """One preset as listed by ``fedllm presets``."""

    name: str  #: full name, ``<component>/<preset>``
    summary: str
    distribution: str
    version: str
    config: dict[str, Any]


def _component_presets(component: str) -> list[PresetInfo]:
    from .plugins import build, load

    info = load("preset", component)
    assert info.plugin is not None  # load raises otherwise
    comp = build(info, info.plugin.Config() if info.plugin.Config is not None else None)
    found = comp.call("fedllm_presets") or {}
    if not isinstance(found, dict):
        raise FedLLMError(f"preset component {component!r} ({info.distribution}) returned "
                          f"{type(found).__name__} from fedllm_presets; expected "
                          "{name: {summary, config}}")
    out = []
    for name, entry in found.items():
        where = f"preset {component}/{name} ({info.distribution} {info.version})"
        if not isinstance(name, str) or not _NAME.match(name):
            raise FedLLMError(f"{where}: the name must match {_NAME.pattern}")
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise FedLLMError(f"{where}: expected a mapping with 'summary' and 'config' (a run "
                              "config mapping)")
        extra = set(entry) - {"summary", "config"}
        if extra:
            raise FedLLMError(f"{where}: unknown key(s) {sorted(extra)}; allowed: summary, config")
        out.append(PresetInfo(f"{component}/{name}", str(entry.get("summary") or ""),
                              info.distribution, info.version, entry["config"]))
    return out


def list_presets() -> list[PresetInfo]:
    """Every installed preset, sorted by name (a broken preset component raises)."""
    from .plugins import installed_names

    return sorted((p for c in installed_names("preset") for p in _component_presets(c)),
                  key=lambda p: p.name)


def preset_config(name: str) -> dict[str, Any]:
    """The config mapping of preset ``<component>/<preset>`` (a copy)."""
    from .plugins import installed_names, suggest

    component, _, preset = name.partition("/")
    components = installed_names("preset")
    if not preset:
        raise ConfigError(f"--preset {name!r}: expected <component>/<preset>; installed "
                          f"preset components: {', '.join(components) or '(none)'} (list "
                          "their presets with `fedllm presets`)")
    if component not in components:
        raise PluginNotFoundError(
            f"--preset {name!r}: no preset component {component!r} is installed."
            f"{suggest(component, components)} Installed: {', '.join(components) or '(none)'}"
            " (entry-point group 'fedllm.presets').")
    presets = {p.name: p for p in _component_presets(component)}
    if name not in presets:
        raise ConfigError(f"--preset {name!r}: {component} has no preset {preset!r}."
                          f"{suggest(name, list(presets))} List them with `fedllm presets`.")
    return copy.deepcopy(presets[name].config)
