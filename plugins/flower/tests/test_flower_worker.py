"""The pieces of the warm deployment: the public listener's filter, the SuperNode's polling
clock, and the warm worker against a real SuperNode (HMAC-only task claims, dies with it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from fedllm_flower.deploy import child_env, free_port
from fedllm_flower.superlink import FleetOnly
from fedllm_flower.supernode import PollClock


def test_public_listener_serves_only_the_fleet_api():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def status(path: str, kind: str = "http") -> int | None:
        sent = []

        async def send(msg):
            sent.append(msg)

        asyncio.run(FleetOnly(app)({"type": kind, "path": path}, None, send))
        return sent[0]["status"] if sent else None

    for ok in ("/v1/fleet/pull-messages", "/v1/fleet/push-object", "/health"):
        assert status(ok) == 200, ok
    for bad in ("/v1/control/list-runs", "/v1/control/start-run", "/v1/runtime/acquire-task",
                "/v1/fleet/../control/list-runs", "/v1/fleet/", "//v1/control/stop-run",
                "/docs", "/openapi.json", "/v1/fleet/pull-messages/x", "/health/x"):
        assert status(bad) == 404, bad
    assert status("/v1/fleet/pull-messages", kind="websocket") is None  # closed, not served
    assert reached == ["/v1/fleet/pull-messages", "/v1/fleet/push-object", "/health"]


def test_poll_clock_shortens_only_flowers_waits(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    clock = PollClock(0.2)
    clock.sleep(3)    # after an empty pull from the SuperLink
    clock.sleep(0.5)  # waiting locally for the ClientApp's reply
    assert slept == [0.2, 0.02]
    assert clock.monotonic is time.monotonic  # everything else is the time module's


@pytest.mark.slow
def test_worker_needs_the_secret_and_dies_with_its_supernode(tmp_path):
    """A SuperNode in process isolation with an HMAC secret (no SuperLink: its Runtime API
    is up while it retries to connect). AcquireTask without the secret is refused (401),
    with it accepted; the warm worker exits once the SuperNode is killed."""
    import httpx

    from fedllm_flower.worker import Worker

    secret = tmp_path / "secret"
    secret.write_bytes(os.urandom(32))
    port = free_port()
    env = child_env(FLWR_HOME=str(tmp_path / "home"))
    node = subprocess.Popen(
        [sys.executable, "-m", "fedllm_flower.supernode", "--pull-interval", "0.2",
         "--superlink", f"127.0.0.1:{free_port()}", "--insecure", "--host", "127.0.0.1",
         "--port", str(port), "--isolation", "process", "--superexec-auth-secret-file",
         str(secret), "--max-wait-time", "120"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert node.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        req = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        with pytest.raises(httpx.HTTPStatusError) as err:
            Worker(f"127.0.0.1:{port}", None).client().AcquireTask(req)  # no secret
        assert err.value.response.status_code == 401
        res = Worker(f"127.0.0.1:{port}", secret.read_bytes()).client().AcquireTask(req)
        assert not res.HasField("task")  # authenticated; nothing to do yet

        worker = subprocess.Popen(
            [sys.executable, "-m", "fedllm_flower.worker", "--runtime-api-address",
             f"127.0.0.1:{port}", "--secret-file", str(secret), "--supernode-pid",
             str(node.pid)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        time.sleep(3)
        assert worker.poll() is None  # serving (polling for tasks)
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
        assert worker.wait(10) == 0
        assert "the SuperNode is gone" in worker.stderr.read()
    finally:
        for p in (worker, node):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
