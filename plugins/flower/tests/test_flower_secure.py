"""TLS + SuperNode authentication by default (with SecAgg+ on top); an unknown node key is
refused."""

from __future__ import annotations

import json
import subprocess
import time

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
    each) train; Mallory's key is not registered and the SuperLink refuses her. While the
    federation runs, the public address answers only the Fleet API: `flwr ls` / `flwr stop`
    with the CA certificate are refused there (they work on the private loopback listener)."""
    from tests.helpers import run_quick

    keys = tmp_path / "keys"
    r = CliRunner().invoke(main, ["keys", str(keys), "--node", "alice", "--node", "bob",
                                  "--node", "mallory"])
    assert r.exit_code == 0, r.output
    coord, nodes_dir = keys / "coordinator", keys / "nodes"
    for f in ("ca.crt", "server.crt", "server.key", "alice.pub", "mallory.pub"):
        assert (coord / f).is_file()
    assert (nodes_dir / "alice" / "alice.key").stat().st_mode & 0o077 == 0  # owner only
    # the coordinator authorises only alice's and bob's keys
    (coord / "mallory.pub").rename(tmp_path / "mallory.pub")
    ref = run_quick(tmp_path, *quick_config(fed_json, "rounds=1"), name="ref")
    port = free_port()
    serve = procs.start("serve", "serve", "--address", f"127.0.0.1:{port}", "--num-nodes", "2",
                        "--workdir", str(tmp_path / "link"), "--keys", str(coord),
                        "--secure-aggregation", *[a for s in quick_config(
                            fed_json, f"output_dir={tmp_path}/runs", "name=dep", "rounds=1",
                            "runtime.backend_options.secure_aggregation.max_weight=64")
                            for a in ("--set", s)])
    nodes = {}
    for name, client in [("alice", ["--client-id", CLIENTS[0]]),
                         ("bob", ["--client-id", CLIENTS[1]]), ("mallory", [])]:
        mine = nodes_dir / name
        nodes[name] = procs.start(f"join-{name}", "join", "--server", f"127.0.0.1:{port}",
                                  "--data", str(fed_json), *client, "--threads", "1",
                                  "--root-cert", str(mine / "ca.crt"), "--auth-key",
                                  str(mine / f"{name}.key"), "--state-dir",
                                  str(tmp_path / f"state-{name}"))
    refused = control_api_refused_on_public_address(tmp_path, procs, serve, port,
                                                    keys / "nodes" / "alice" / "ca.crt")
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
    print("access control:", json.dumps(refused))


def control_api_refused_on_public_address(tmp_path, procs, serve, port, ca) -> dict:
    """While the run is live: `flwr ls` / `flwr stop RUN` and raw Control/Runtime requests
    against the public address, with the CA certificate, are refused (404); the same `flwr ls`
    on the coordinator's private loopback listener lists the run."""
    import re

    import httpx

    from fedllm_flower.deploy import bin_path, child_env

    path = tmp_path / "link" / "flwr_home" / "config.toml"  # written once the link is up
    deadline = time.monotonic() + 120
    while not (path.is_file() and "address" in path.read_text()):
        assert serve.poll() is None and time.monotonic() < deadline, procs.log(serve)[-3000:]
        time.sleep(0.5)
    conf = path.read_text()
    private = dict(re.findall(r'^(address|root-certificates) = "(.*)"$', conf, re.M))
    assert private["address"].startswith("127.0.0.1:") and \
        private["address"] != f"127.0.0.1:{port}"
    home = tmp_path / "outsider"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "public"\n\n[superlink.public]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{ca}"\n\n[superlink.private]\naddress = "{private["address"]}"\n'
        f'root-certificates = "{private["root-certificates"]}"\n')

    def flwr(*args):
        return subprocess.run([bin_path("flwr"), *args], env=child_env(FLWR_HOME=str(home)),
                              capture_output=True, text=True, timeout=60)

    run_id = None
    deadline = time.monotonic() + 300
    while run_id is None:  # the run appears once the coordinator has started it
        assert serve.poll() is None, procs.log(serve)[-3000:]
        assert time.monotonic() < deadline
        res = flwr("ls", "private", "--format", "json")
        runs = json.loads(res.stdout or "{}").get("runs", []) if res.returncode == 0 else []
        run_id = next((r["run-id"] for r in runs if r.get("status", "").startswith("running")),
                      None)
        time.sleep(1)
    out: dict = {"private flwr ls": f"listed run {run_id}"}
    for args in (("ls", "public"), ("stop", str(run_id), "public")):
        res = flwr(*args)
        text = res.stdout + res.stderr
        assert res.returncode != 0 and ("404" in text or "Not Found" in text), text
        out[f"public flwr {args[0]}"] = f"exit {res.returncode}: 404"
    import ssl

    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as c:
        base = f"https://127.0.0.1:{port}"
        for path in ("/v1/control/list-runs", "/v1/control/stop-run", "/v1/runtime/acquire-task",
                     "/v1/fleet/../control/list-runs", "/docs", "/openapi.json"):
            code = c.request("GET" if path.startswith(("/docs", "/openapi")) else "POST",
                             base + path, content=b"").status_code
            assert code == 404, (path, code)
            out[path] = code
        out["/health"] = c.get(base + "/health").status_code
        assert out["/health"] == 200
    assert serve.poll() is None  # the run was not stopped
    return out
