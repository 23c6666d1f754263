"""Fixtures for the Flower tests: a tiny 2-client dataset file and process bookkeeping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # flower_helpers (a unique module name)
from flower_helpers import CLIENTS, Procs  # noqa: E402


@pytest.fixture
def fed_json(tmp_path) -> Path:
    from fedllm_datasets.embedded import raw

    data = raw()["data"]
    p = tmp_path / "fed.json"
    p.write_text(json.dumps({c: data[c][:10] for c in CLIENTS}), encoding="utf-8")
    return p


@pytest.fixture
def procs(tmp_path):
    ps = Procs(tmp_path)
    yield ps
    ps.close()
