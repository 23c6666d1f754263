"""TLS + SuperNode authentication by default (with SecAgg+ on top); an unknown node key is
refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flower_helpers import CLIENTS, adapter, assert_same_adapter, quick_config

from fedllm.cli.main import main
from fedllm_flower.deploy import free_port

pytestmark = pytest.mark.slow


def test_serve_and_join_refuse_to_run_insecure_by_accident(tmp_path, fed_json):
    r = CliRunner().invoke(main, ["serve", "--set", f"dataset.path={fed_json}"])
    assert r.exit_code == 2 and "pass --keys DIR" in r.output and "--insecure" in r.output
    r = CliRunner().invoke(main, ["join", "--server", "127.0.0.1:9092", "--data", str(fed_json)])
    assert r.exit_code == 2 and "--root-cert" in r.output and "--auth-key" in r.output
    r = CliRunner().invoke(main, ["join", "--server", "nowhere", "--data", "x", "--insecure"])
    assert r.exit_code == 2 and "'nowhere' is not HOST:PORT" in r.output


def test_keys_then_tls_secure_aggregation_federation_refuses_unknown_node(
        tmp_path, fed_json, procs):
    """The production setup: TLS, registered node keys, SecAgg+. Alice and Bob (one client
    each) train; Mallory's key is not registered and the SuperLink refuses her."""
    from tests.helpers import run_quick

    keys = tmp_path / "keys"
    r = CliRunner().invoke(main, ["keys", str(keys), "--node", "alice", "--node", "bob",
                                  "--node", "mallory"])
    assert r.exit_code == 0, r.output
    for f in ("ca.crt", "server.crt", "server.key", "alice.key", "alice.pub", "mallory.key"):
        assert (keys / f).is_file()
    assert (keys / "alice.key").stat().st_mode & 0o077 == 0  # private keys: owner only
    # the coordinator authorises only alice's and bob's keys
    (keys / "mallory.pub").rename(tmp_path / "mallory.pub")
    ref = run_quick(tmp_path, *quick_config(fed_json, "rounds=1"), name="ref")
    port = free_port()
    serve = procs.start("serve", "serve", "--address", f"127.0.0.1:{port}", "--num-nodes", "2",
                        "--workdir", str(tmp_path / "link"), "--keys", str(keys),
                        "--secure-aggregation", *[a for s in quick_config(
                            fed_json, f"output_dir={tmp_path}/runs", "name=dep", "rounds=1",
                            "runtime.backend_options.secure_aggregation.max_weight=64")
                            for a in ("--set", s)])
    nodes = {}
    for name, client in [("alice", ["--client-id", CLIENTS[0]]),
                         ("bob", ["--client-id", CLIENTS[1]]), ("mallory", [])]:
        nodes[name] = procs.start(f"join-{name}", "join", "--server", f"127.0.0.1:{port}",
                                  "--data", str(fed_json), *client, "--threads", "1",
                                  "--root-cert", str(keys / "ca.crt"), "--auth-key",
                                  str(keys / f"{name}.key"), "--state-dir",
                                  str(tmp_path / f"state-{name}"))
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    run = tmp_path / "runs" / "dep"
    # SecAgg+ is quantised: equal to the in-process run within its precision, not bit-exact
    assert_same_adapter(adapter(run), adapter(ref.run_dir.path), tol=2e-5)
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert sorted(rec["cohorts"]["global"]["clients"]) == sorted(CLIENTS)
    assert rec["wire_bytes_up"] > 2 * rec["bytes_up"] > 0  # masked vectors, keys and shares
    link_log = (tmp_path / "link" / "superlink.log").read_text(errors="replace")
    assert "No SuperNode found with the given public key" in link_log \
        or "Invalid SuperNode authentication" in link_log
    assert "SuperNode ID:" not in procs.log(nodes["mallory"])
    assert all("SuperNode ID:" in procs.log(nodes[n]) for n in ("alice", "bob"))
