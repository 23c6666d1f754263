"""fedllm's pytest plugin (entry point ``pytest11``): fixtures for testing fedllm components.

Loaded automatically in every pytest session of an environment where fedllm is installed, so
it imports nothing heavy and defines fixtures only (no autouse): a plugin's tests ask for

* ``fedllm_home``: a private ``FEDLLM_HOME`` (the tiny model and the caches) for the session,
  with the Hugging Face hub and datasets offline;
* ``tiny_federation``: overrides that make a run small and fast (the embedded tiny model and
  dataset, 2 rounds of 2 clients × 2 steps), and a ``run(tmp_path, *overrides)`` helper;
* ``run_context``: a :class:`~fedllm.context.RunContext` with the tiny model wrapped by LoRA and
  the embedded data encoded: what a hook sees in a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def fedllm_home(tmp_path_factory) -> Path:
    """A private FEDLLM_HOME for this test session (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    home = os.environ.get("FEDLLM_TEST_HOME") or str(tmp_path_factory.mktemp("fedllm-home"))
    os.environ["FEDLLM_HOME"] = home
    return Path(home)


@dataclass
class TinyFederation:
    """A few-seconds federation on the embedded defaults."""

    overrides: list[str]

    def run(self, tmp_path: Path, *overrides: str, name: str = "r", until: int | None = None):
        """Run it in-process (plus ``overrides``); returns the finished Engine."""
        from . import run_quick

        return run_quick(tmp_path, *overrides, name=name, until=until)

    def config(self, *overrides: str) -> dict[str, Any]:
        """The raw run config (what `fedllm run --set ...` would build)."""
        from ..config import apply_override

        data: dict[str, Any] = {}
        for o in [*self.overrides, *overrides]:
            apply_override(data, o)
        return data


@pytest.fixture(scope="session")
def tiny_federation(fedllm_home) -> TinyFederation:
    from . import QUICK

    return TinyFederation(list(QUICK))


@pytest.fixture(scope="session")
def run_context(fedllm_home, tiny_federation):
    """A RunContext with the tiny model (LoRA-wrapped) and the embedded data encoded."""
    from rich.console import Console

    from ..config import resolve
    from ..context import client_context

    ctx = client_context(resolve(tiny_federation.config("evaluators=[]")),
                         console=Console(stderr=True, quiet=True))
    ctx.model.eval()
    return ctx
