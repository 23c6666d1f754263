"""`fedllm serve` + 2 x `fedllm join` on 127.0.0.1 end with the in-process run's adapter."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from flower_helpers import CLIENTS, adapter, assert_same_adapter, quick_config

from fedllm_flower.deploy import free_port

pytestmark = pytest.mark.slow


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def start_federation(procs, tmp_path, fed_json, *extra, serve_args=(), join_args=(),
                     joins=CLIENTS, name="dep", resume=None, tag=""):
    port = free_port()
    config = (["--resume", str(resume)] if resume else
              _sets(quick_config(fed_json, f"output_dir={tmp_path}/runs", f"name={name}", *extra)))
    serve = procs.start(f"serve{tag}", "serve", "--address", f"127.0.0.1:{port}", "--num-nodes",
                        str(len(joins)), "--workdir", str(tmp_path / f"link{tag}"), *serve_args,
                        *config)
    nodes = {c: procs.start(f"join-{c}{tag}", "join", "--server", f"127.0.0.1:{port}", "--data",
                            str(fed_json), "--client-id", c, "--threads", "1",
                            "--state-dir", str(tmp_path / f"state-{c}"), *join_args)
             for c in joins}
    return serve, nodes


# SCAFFOLD's loopback run is test_coordinator_checkpoint_and_resume (with a restart, too).
# FedProx runs with a coordinator that holds no data: clients come from the nodes' --client-id.
NO_DATA = ["dataset={name: flower-nodes, on_nodes: {name: fedllm-bench-json, heldout: 0}}"]


@pytest.mark.parametrize("algo,coordinator", [("fedavg", []), ("fedprox", NO_DATA)])
def test_loopback_deployment_matches_in_process(tmp_path, fed_json, procs, algo, coordinator):
    from tests.helpers import run_quick

    ref = run_quick(tmp_path, *quick_config(fed_json, f"algorithm.name={algo}"), name="ref")
    serve, nodes = start_federation(procs, tmp_path, fed_json, f"algorithm.name={algo}",
                                    *coordinator, serve_args=["--insecure"],
                                    join_args=["--insecure"])
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    for p in nodes.values():  # one warm worker per node served every message (query + rounds)
        pids = re.findall(r"\[fedllm worker (\d+)\] task", procs.log(p))
        assert len(pids) == 3 and len(set(pids)) == 1, procs.log(p)[-2000:]
    run = tmp_path / "runs" / "dep"
    assert_same_adapter(adapter(run), adapter(ref.run_dir.path))
    used = yaml.safe_load((run / "config.yaml").read_text())["dataset"]
    assert used["name"] == ("flower-nodes" if coordinator else "fedllm-bench-json")
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in recs] == [1, 2]
    assert [r["client_model_loads"] for r in recs] == [2, 0]  # once per node and run
    for r in recs:
        assert sorted(r["cohorts"]["global"]["clients"]) == sorted(CLIENTS)
        assert "dropped" not in r["cohorts"]["global"]
        # serialised messages carry at least the adapter each way, per client
        assert r["wire_bytes_up"] >= r["bytes_up"] > 0
        assert r["wire_bytes_down"] > 0  # identical chunks (zero-initialised B) go once
        assert r["wall_s"] > 0
    assert recs[1]["wire_bytes_down"] >= recs[1]["bytes_down"]


def test_coordinator_checkpoint_and_resume(tmp_path, fed_json, procs):
    """SCAFFOLD over 2 SuperNodes, the coordinator stopped after round 1 and resumed with
    fresh SuperNodes (server c from the checkpoint, each c_k from its node's state folder):
    the in-process, uninterrupted run's adapter."""
    from tests.helpers import run_quick

    ref = run_quick(tmp_path, *quick_config(fed_json, "algorithm.name=scaffold"), name="ref")
    insecure = dict(serve_args=["--insecure"], join_args=["--insecure"])
    serve, nodes = start_federation(procs, tmp_path, fed_json, "algorithm.name=scaffold",
                                    serve_args=["--insecure", "--stop-after", "1"],
                                    join_args=["--insecure"])
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    run = tmp_path / "runs" / "dep"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "adapter").exists()
    for p in nodes.values():
        procs.kill(p)
    serve, _ = start_federation(procs, tmp_path, fed_json, resume=run, tag="2", **insecure)
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    assert [json.loads(x)["round"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]
    assert_same_adapter(adapter(run), adapter(ref.run_dir.path))
