"""A local update longer than Flower's task-token patience (2 x 30 s without a heartbeat, then
"ClientApp stopped responding") completes: the warm worker heartbeats the task while the model
trains. The update is made slow by a test-only privacy component that sleeps before upload."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from flower_helpers import adapter
from test_flower_deploy import start_federation

pytestmark = pytest.mark.slow

SLEEP_S = 66  # > HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL = 60 s (flwr 1.41)


def install_sleeper(where):
    """A distribution on PYTHONPATH: privacy component ``test-sleep`` (sleeps on the client)."""
    (where / "fedllm_test_sleep.py").write_text(textwrap.dedent('''
        import time
        from fedllm import Plugin, PluginConfig, Privacy, hookimpl

        class Config(PluginConfig):
            seconds: float = 0.0

        class Sleep(Privacy):
            def __init__(self, config):
                self.config = config

            @hookimpl
            def fedllm_privatize(self, ctx, instruction, update):
                time.sleep(self.config.seconds)

        plugin = Plugin(kind="privacy", name="test-sleep", factory=Sleep, Config=Config,
                        description="Test only: a slow local update.")
        '''))
    dist = where / "fedllm_test_sleep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fedllm-test-sleep\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[fedllm.privacy]\ntest-sleep = fedllm_test_sleep:plugin\n")


def test_local_update_longer_than_task_timeout(tmp_path, fed_json, procs, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_sleeper(site)
    monkeypatch.setenv("PYTHONPATH", str(site))  # the coordinator, the nodes, their children
    one = tmp_path / "one.json"  # one client on one node
    one.write_text(json.dumps({"arithmetic": json.loads(fed_json.read_text())["arithmetic"]}))
    serve, nodes = start_federation(
        procs, tmp_path, one, "rounds=1", "clients_per_round=1",
        f"privacy=[{{name: test-sleep, seconds: {SLEEP_S}}}]",
        serve_args=["--insecure"], join_args=["--insecure"], joins=["arithmetic"])
    assert procs.wait(serve, 300) == 0, procs.log(serve)[-3000:]
    run = tmp_path / "runs" / "dep"
    (rec,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rec["wall_s"] > SLEEP_S
    assert len(rec["cohorts"]["global"]["clients"]) == 1
    assert "dropped" not in rec["cohorts"]["global"]
    assert adapter(run)
    log = procs.log(nodes["arithmetic"])
    assert "stopped responding" not in log and "refused the task heartbeat" not in log
    beats = max(int(b) for b in re.findall(r"heartbeats (\d+)\)", log))
    assert beats >= SLEEP_S // 15, log[-2000:]  # one every 15 s kept the task token alive
