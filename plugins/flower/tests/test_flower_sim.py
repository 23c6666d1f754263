"""`runtime.backend=flower-sim`: Flower's simulation engine gives the in-process result, bit for
bit for any number of workers; each worker loads the model once per run; Ray listens on
127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import threading

import pytest
import torch
from flower_helpers import adapter, assert_same_adapter, quick_config

from fedllm.errors import ConfigError, FedLLMError
from fedllm_flower.options import SimConfig


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


@pytest.mark.slow
def test_workers_give_the_same_adapter_load_once_and_listen_on_loopback(tmp_path, fed_json):
    """In-process, 1 worker and 2 workers: bit-identical adapters (CPU, updates folded in
    sampling order). Each worker builds its model once per run (client_model_loads: the
    contexts built per round), and no Ray process listens beyond 127.0.0.1."""
    psutil = pytest.importorskip("psutil")
    from tests.helpers import run_quick

    cfg = quick_config(fed_json, "rounds=3")
    ref = adapter(run_quick(tmp_path, *cfg, name="ref").run_dir.path)
    seen: set[tuple[str, int, str]] = set()
    stop = threading.Event()

    def sample() -> None:  # every listening socket of this process's tree, while it runs
        me = psutil.Process(os.getpid())
        while not stop.wait(0.25):
            for p in [me, *me.children(recursive=True)]:
                try:
                    seen.update((c.laddr.ip, c.laddr.port, p.name()) for c in
                                p.net_connections(kind="inet")
                                if c.status == psutil.CONN_LISTEN)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue

    for n in (1, 2):
        sampler = threading.Thread(target=sample, daemon=True)
        stop.clear()
        sampler.start()
        try:
            sim = run_quick(tmp_path, *cfg, "runtime.backend=flower-sim",
                            f"runtime.backend_options.workers={n}", name=f"sim{n}")
        finally:
            stop.set()
            sampler.join()
        got = adapter(sim.run_dir.path)
        assert got.keys() == ref.keys()
        assert all(torch.equal(got[k], ref[k]) for k in ref), f"workers={n} differs"
        loads = [r["client_model_loads"] for r in sim.history]
        assert 1 <= sum(loads) <= n and loads[-1] == 0, loads  # once per worker and run
        if n == 1:
            assert loads == [1, 0, 0]
    assert any(name.startswith(("raylet", "gcs_server")) for _, _, name in seen), seen
    outside = {s for s in seen if not ipaddress.ip_address(
        s[0].removeprefix("::ffff:")).is_loopback}
    assert not outside, f"listening beyond loopback: {sorted(outside)}"


def test_worker_resources_give_exactly_the_workers_asked():
    def actors(cfg: SimConfig) -> int:  # what Flower's pool_size_from_resources computes
        init, per = cfg.ray_resources()
        return int(init["num_cpus"] / per["num_cpus"])

    assert actors(SimConfig()) == 2  # the default: 2 CPUs, 1 per worker
    for w, cpw in [(1, 1.0), (2, 1.0), (3, 0.5), (3, 1.0), (7, 0.3), (4, 2.0)]:
        cfg = SimConfig(workers=w, cpus_per_worker=cpw)
        assert actors(cfg) == w, (w, cpw)
        assert cfg.ray_resources()[1]["num_cpus"] >= cpw * (1 - 1e-6)
    assert actors(SimConfig(workers=2, cpus=8)) == 2
    init, per = SimConfig(workers=2, gpus_per_worker=0.5, gpus=1).ray_resources()
    assert init["num_gpus"] == 1 and per["num_gpus"] == 0.5
    assert SimConfig().supernodes() == 2 and SimConfig(workers=4).supernodes() == 4
    assert SimConfig(workers=3, cpus=2).problems()  # 3 workers do not fit 2 CPUs
    assert not SimConfig(workers=4, cpus=2, cpus_per_worker=0.5).problems()
