"""TLS + SuperNode authentication by default; an unknown node key is refused."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from click.testing import CliRunner

from fedllm.cli.main import main

from flower_helpers import CLIENTS, adapter, quick_config
from test_flower_deploy import start_federation

pytestmark = pytest.mark.slow


def test_serve_and_join_refuse_to_run_insecure_by_accident(tmp_path, fed_json):
    r = CliRunner().invoke(main, ["serve", "--set", f"dataset.path={fed_json}"])
    assert r.exit_code == 2 and "pass --keys DIR" in r.output and "--insecure" in r.output
    r = CliRunner().invoke(main, ["join", "--server", "127.0.0.1:9092", "--data", str(fed_json)])
    assert r.exit_code == 2 and "--root-cert" in r.output and "--auth-key" in r.output
    r = CliRunner().invoke(main, ["join", "--server", "nowhere", "--data", "x", "--insecure"])
    assert r.exit_code == 2 and "'nowhere' is not HOST:PORT" in r.output


def test_keys_then_tls_federation_refuses_unknown_node(tmp_path, fed_json, procs):
    keys = tmp_path / "keys"
    r = CliRunner().invoke(main, ["keys", str(keys), "--node", "alice", "--node", "mallory"])
    assert r.exit_code == 0, r.output
    for f in ("ca.crt", "server.crt", "server.key", "alice.key", "alice.pub", "mallory.key"):
        assert (keys / f).is_file()
    assert (keys / "alice.key").stat().st_mode & 0o077 == 0  # private keys: owner only
    # the coordinator authorises only alice's key
    (keys / "mallory.pub").rename(tmp_path / "mallory.pub")
    tls = ["--root-cert", str(keys / "ca.crt")]
    serve, nodes = start_federation(
        procs, tmp_path, fed_json, "rounds=1", serve_args=["--keys", str(keys)],
        join_args=[*tls, "--auth-key", str(keys / "alice.key")], joins=[",".join(CLIENTS)])
    mallory = procs.start("join-mallory", "join", "--server", serve_address(procs, serve),
                          "--data", str(fed_json), *tls, "--auth-key",
                          str(keys / "mallory.key"))
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    run = tmp_path / "runs" / "dep"
    assert adapter(run)
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert sorted(rec["cohorts"]["global"]["clients"]) == sorted(CLIENTS)
    link_log = (tmp_path / "link" / "superlink.log").read_text(errors="replace")
    assert "No SuperNode found with the given public key" in link_log \
        or "Invalid SuperNode authentication" in link_log
    assert "SuperNode ID:" not in procs.log(mallory)
    assert "SuperNode ID:" in procs.log(next(iter(nodes.values())))


def serve_address(procs, serve) -> str:
    import re

    for _ in range(200):
        m = re.search(r"SuperLink on (\S+:\d+)", procs.log(serve))
        if m:
            return m.group(1)
        time.sleep(0.1)
    raise AssertionError(procs.log(serve))
