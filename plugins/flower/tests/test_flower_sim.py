"""`runtime.backend=flower-sim`: Flower's simulation engine gives the in-process result."""

from __future__ import annotations

import importlib.util

import pytest
from flower_helpers import adapter, assert_same_adapter, quick_config

from fedllm.errors import ConfigError, FedLLMError


@pytest.mark.slow
def test_flower_sim_matches_in_process_fedavg(tmp_path, fed_json):
    from tests.helpers import run_quick

    ref = run_quick(tmp_path, *quick_config(fed_json), name="ref")
    sim = run_quick(tmp_path, *quick_config(fed_json, "runtime.backend=flower-sim"), name="sim")
    assert_same_adapter(adapter(sim.run_dir.path), adapter(ref.run_dir.path))
    last = sim.history[-1]
    assert sorted(last["cohorts"]["global"]["clients"]) == ["arithmetic", "capitals"]
    assert last["wire_bytes_up"] >= last["bytes_up"] > 0


def test_flower_sim_without_ray_says_what_to_install(tmp_path, fed_json, monkeypatch):
    from tests.helpers import run_quick

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(FedLLMError, match=r"fedllm-flower\[simulation\]"):
        run_quick(tmp_path, *quick_config(fed_json, "runtime.backend=flower-sim"))


def test_bad_backend_option_names_field(tmp_path, fed_json):
    from tests.helpers import run_quick

    with pytest.raises(ConfigError, match=r"runtime.backend_options.num_supernodes"):
        run_quick(tmp_path, *quick_config(fed_json, "runtime.backend=flower-sim",
                                          "runtime.backend_options.num_supernodes=0"))
