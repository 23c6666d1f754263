"""FedLLM-Bench's presets: one run config per (paper setup, method), shipped as YAML data.

Each ``presets/<setup>.yaml`` transcribes one row of the paper's Table 7 (with the section it
comes from) as a base ``config``, lists the ``methods`` run on it (fragments from
``presets/methods.yaml``) and optional ``variants`` (named fragments, e.g. the DP budgets).
A preset ``<setup>-<method>`` is the base config deep-merged with the method's fragment; the
local-training baseline follows the setup's Table 7 "local epochs": the one client makes
``local_epochs`` passes over its data, one per round (dynamic local steps
``ceil(n_k / batch)``, with every client counted as visited each round).

Only PyYAML is imported (``fedllm presets`` and ``fedllm --help`` stay instant).
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

from fedllm import Plugin, Preset, hookimpl


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged into a copy of ``base`` (mappings merge; lists and values replace).
    A component section naming another plugin replaces the section instead of merging."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if (isinstance(v, dict) and isinstance(out.get(k), dict)
                and v.get("name", out[k].get("name")) == out[k].get("name")):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(name: str) -> dict[str, Any]:
    text = resources.files("fedllm_bench").joinpath("presets", name).read_text("utf-8")
    return yaml.safe_load(text) or {}


@cache
def setups() -> dict[str, dict[str, Any]]:
    """Every setup file, by setup name."""
    root = resources.files("fedllm_bench").joinpath("presets")
    out = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml") and entry.name != "methods.yaml":
            data = _read(entry.name)
            out[data["setup"]] = data
    return out


@cache
def methods() -> dict[str, dict[str, Any]]:
    return _read("methods.yaml")


def method_config(setup: dict[str, Any], method: str) -> dict[str, Any]:
    """The fragment of ``method`` for ``setup`` (the local baseline completed from Table 7)."""
    frag = copy.deepcopy(methods()[method]["config"])
    paper = setup.get("paper") or {}
    if method == "local" and paper.get("local_epochs"):
        epochs = paper["local_epochs"]
        frag = merge(frag, {"rounds": epochs, "clients_per_round": paper["clients"],
                            "task": {"local_steps": "dynamic", "dynamic_epochs": float(epochs)}})
    return frag


def summary(setup: dict[str, Any], method: str) -> str:
    """One line: the setup, the method and its Table 7 numbers."""
    paper, label = setup.get("paper") or {}, methods()[method]["label"]
    if method == "local" and paper.get("local_epochs"):
        return f"{setup['summary']}: {label}, one client, {paper['local_epochs']} epochs"
    if not paper:
        return f"{setup['summary']}: {label}"
    steps = paper.get("local_steps")
    return (f"{setup['summary']}: {label}, {paper['clients_per_round']}/{paper['clients']} "
            f"clients, {steps} {'local steps' if steps == 'dynamic' else 'steps'}, "
            f"{paper['rounds']} rounds")


def all_presets() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, setup in setups().items():
        for m in setup.get("methods", []):
            out[f"{name}-{m}"] = {"summary": summary(setup, m),
                                  "config": merge(setup["config"], method_config(setup, m))}
        for v, frag in (setup.get("variants") or {}).items():
            frag = dict(frag)
            text = frag.pop("summary", v)
            method = frag.pop("method", None)
            config = setup["config"]
            if method:
                config = merge(config, method_config(setup, method))
            out[f"{name}-{v}"] = {"summary": f"{setup['summary']}: {text}",
                                  "config": merge(config, frag)}
    return out


class BenchPresets(Preset):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_presets(self) -> dict[str, dict[str, Any]]:
        return all_presets()


plugin = Plugin(kind="preset", name="fedllm-bench", factory=BenchPresets,
                description="FedLLM-Bench's setups (Table 7) x methods, the DP runs (Figure 6, "
                "Table 8), FedSamLang/FedSimLang, local baselines, and a toy CI setup.")
