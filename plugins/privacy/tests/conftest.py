"""Fixtures of the privacy tests: a minimal run context for driving hooks directly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def _fake_ctx(*, clients=10, samples=200, k=3, rounds=10, lr=5e-3, seed=0, dataset=True,
              sampling="fixed"):
    ds = (SimpleNamespace(clients=[f"c{i}" for i in range(clients)], train=[0] * samples)
          if dataset else None)
    cfg = SimpleNamespace(clients_per_round=k, rounds=rounds, seed=seed,
                          train=SimpleNamespace(lr=lr))
    cohorts = {"global": list(ds.clients)} if ds is not None else {}
    sampler = SimpleNamespace(cap=lambda name: sampling if name == "sampling" else None)
    plugins = SimpleNamespace(one=lambda kind: sampler if kind == "sampler" else None)
    return SimpleNamespace(config=cfg, dataset=ds, cohorts=cohorts, plugins=plugins,
                           num_clients=lambda cohort: clients,
                           console=SimpleNamespace(print=lambda *a, **kw: None))


@pytest.fixture
def fake_ctx():
    """``fake_ctx(clients=, samples=, k=, rounds=, lr=, seed=, dataset=, sampling=)`` → a ctx
    stand-in with the fields the privacy plugins read (config, dataset, cohorts, num_clients,
    console, and the sampler's ``sampling`` capability through plugins)."""
    return _fake_ctx
