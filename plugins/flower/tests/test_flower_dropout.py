"""A SuperNode killed mid-run: the round completes with the clients that answered."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from flower_helpers import adapter
from test_flower_deploy import start_federation

pytestmark = pytest.mark.slow


def test_killed_node_is_recorded_as_dropped(tmp_path, fed_json, procs):
    serve, nodes = start_federation(
        procs, tmp_path, fed_json, serve_args=["--insecure", "--round-timeout", "120",
                                               "--min-clients", "1"],
        join_args=["--insecure"])
    metrics = wait_for_round(procs, serve, tmp_path / "runs" / "dep")
    # nothing listens beyond the addresses asked: the coordinator's tree has two listening
    # sockets (the public Fleet-only address and the private loopback one); SuperNodes and
    # their warm workers listen on 127.0.0.1 only (the SuperNode's Runtime API)
    listening = {name: _listening(p) for name, p in [("serve", serve), *nodes.items()]}
    assert len(listening["serve"]) == 2, listening
    assert all(ip == "127.0.0.1" for socks in listening.values() for ip, _ in socks), listening
    assert all(len(listening[c]) == 1 for c in nodes), listening
    os.killpg(nodes["capitals"].pid, signal.SIGKILL)  # the node and its ClientApp
    assert procs.wait(serve, 400) == 0, procs.log(serve)[-3000:]
    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert "dropped" not in recs[0]["cohorts"]["global"]
    assert recs[1]["cohorts"]["global"]["dropped"] == ["capitals"]
    assert list(recs[1]["cohorts"]["global"]["clients"]) == ["arithmetic"]
    assert adapter(tmp_path / "runs" / "dep")  # the run finished and saved its adapter


def wait_for_round(procs, serve, run: Path, timeout: float = 300) -> Path:
    """Block until the coordinator has written its first round record; its metrics file."""
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert serve.poll() is None, procs.log(serve)[-3000:]
        assert time.monotonic() < deadline, procs.log(serve)[-3000:]
        time.sleep(0.5)
    return metrics


def _listening(proc) -> set[tuple[str, int]]:
    psutil = pytest.importorskip("psutil")
    root = psutil.Process(proc.pid)
    out = set()
    for p in [root, *root.children(recursive=True)]:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return out
