"""The warm ClientApp worker of ``fedllm join``: one long-lived process per SuperNode that keeps
the model loaded across messages, rounds and runs.

Stock Flower 1.41 starts a fresh ``flwr-clientapp`` process for every message (it re-imports
torch and rebuilds the model each time). ``fedllm join`` instead starts
``flower-supernode --isolation process --superexec-auth-secret-file S`` (so the SuperNode
launches nothing) and this worker, which does the SuperExec's and ``flwr-clientapp``'s job in
its own process, in a loop:

1. ``AcquireTask`` on the SuperNode's Runtime API (127.0.0.1), signed with the HMAC secret
   ``S`` (Flower's ``SuperExecAuthHttpInterceptor``): a per-task token;
2. with that token: ``PullTaskInput`` + ``PullMessages`` (flwr's ``pull_task_input``), call
   fedllm's ClientApp in this process, ``PushMessages`` (``push_message``) and
   ``PushTaskOutput`` (``push_task_output``);
3. meanwhile a heartbeat thread renews the task token every ``HEARTBEAT_S`` (Flower expires it
   60 s after the last heartbeat and replies ``ClientApp stopped responding``). Flower's own
   ``HeartbeatSender`` is not used: it raises SIGINT in its process when a heartbeat is
   refused, which would kill this worker and its loaded model.

The ClientApp's context cache (``client_app.client_context``: model and encoded data per
resolved config) lives in this process, so it survives across messages and runs and is rebuilt
only when the config changes. The worker runs only the installed fedllm ClientApp: a FAB whose
``clientapp`` is anything else is refused (nothing from the FAB is installed or imported).
It exits when the SuperNode (``--supernode-pid``) or its parent (``fedllm join``) goes away.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

HEARTBEAT_S = 15.0  # Flower's task-token patience is 2 x 30 s after the last heartbeat
CLIENTAPP_REF = "fedllm_flower.client_app:app"


def log(msg: str) -> None:
    print(f"[fedllm worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def watch(supernode_pid: int | None) -> None:
    """Exit at once when the SuperNode dies or this worker is orphaned."""
    parent = os.getppid()
    try:  # Linux: SIGTERM when the thread that started us (fedllm join) dies
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def loop() -> None:
        while True:
            time.sleep(0.3)
            if os.getppid() != parent or (supernode_pid and not _alive(supernode_pid)):
                log("the SuperNode is gone: exiting")
                os._exit(0)

    threading.Thread(target=loop, name="fedllm-worker-watch", daemon=True).start()


def no_self_kill(invoker: Any) -> Any:
    """Flower's HTTP retry invoker answers a 401 by sending SIGINT to its own process (a
    one-task ``flwr-clientapp`` then exits); here a 401 (a wrong secret, a revoked task token)
    is raised to the caller instead, and the worker lives on with its model."""
    import httpx

    flower = invoker.should_giveup

    def should_giveup(exc: Exception) -> bool:
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401:
            return True
        return bool(flower(exc))

    invoker.should_giveup = should_giveup
    return invoker


def pull_input(c: Any, wait: float = 60.0) -> tuple[Any, Any, Any, Any]:
    """flwr's ``run_clientapp.pull_task_input`` for a worker that claims a task the moment it
    exists. The SuperNode creates the task *before* it has stored the message and pulled the
    message's objects from the SuperLink; a fresh ``flwr-clientapp`` starts too late to notice,
    but here the message may still be missing (retry) or its objects incomplete (Flower's pull
    backs off from 1 s up to 10 s; we start at 20 ms)."""
    from flwr.app import Message
    from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
    from flwr.proto.node_pb2 import Node
    from flwr.proto.runtime_pb2 import PullAppMessagesRequest, PullTaskInputRequest
    from flwr.supercore.inflatable.inflatable_protobuf_utils import (
        make_confirm_message_received_fn_protobuf,
        make_pull_object_fn_protobuf,
    )
    from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
    from flwr.supercore.task_identity import TaskIdentity

    res = c.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id, TaskIdentity.run_id = res.task_id, res.run.run_id
    TaskIdentity.node_id = res.context.node_id
    context, run, fab = (context_from_proto(res.context), run_from_proto(res.run),
                         fab_from_proto(res.fab))
    deadline, delay = time.monotonic() + wait, 0.01
    while not (msgs := c.PullMessages(PullAppMessagesRequest())).messages_list:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the SuperNode stored no message for task {res.task_id} "
                               f"within {wait:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    node = Node(node_id=context.node_id)
    tree = msgs.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree, make_pull_object_fn_protobuf(c.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(c.ConfirmMessageReceived, node,
                                                  context.run_id),
        return_type=Message, initial_backoff=0.02, backoff_cap=1.0)
    message.metadata.__dict__["_message_id"] = tree.object_id  # as flwr's pull_task_input
    return message, context, run, fab


class Worker:
    def __init__(self, address: str, secret: bytes | None, poll: float = 0.05,
                 heartbeat: float = HEARTBEAT_S):
        self.address, self.secret, self.poll, self.heartbeat_s = address, secret, poll, heartbeat
        self.fabs: dict[str, str | None] = {}  # FAB hash -> None (ours) or why it is refused
        self.served = 0
        self.phases = (0.0, 0.0, 0.0)  # last task: seconds to pull, run, push
        self.beats = 0  # heartbeats the last task sent

    def client(self, token: str | None = None) -> Any:
        from flwr.supercore.interceptors import (
            RuntimeTokenHttpInterceptor,
            RuntimeVersionHttpInterceptor,
            SuperExecAuthHttpInterceptor,
        )
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        interceptors: list[Any] = [RuntimeVersionHttpInterceptor(component_name="flwr-clientapp")]
        if token is not None:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        elif self.secret is not None:
            interceptors.append(SuperExecAuthHttpInterceptor(
                master_secret=self.secret,
                protected_methods={"/flwr.proto.Runtime/AcquireTask"}))
        return RuntimeHttpClient.from_server_address(
            server_address=self.address, insecure=True, root_certificates=None,
            interceptors=interceptors, retry_invoker=no_self_kill(
                make_simple_http_retry_invoker()))

    def check_fab(self, fab: Any) -> str | None:
        """None when the FAB names fedllm's ClientApp, else why it is refused."""
        if fab.hash_str not in self.fabs:
            from flwr.common.config import get_fab_config

            try:
                ref = get_fab_config(fab.content)["tool"]["flwr"]["app"]["components"][
                    "clientapp"]
            except Exception as exc:  # noqa: BLE001 - any unreadable FAB is refused
                ref = f"unreadable ({exc})"
            self.fabs[fab.hash_str] = (None if ref == CLIENTAPP_REF else
                                       f"this node runs only {CLIENTAPP_REF}, not {ref!r}")
        return self.fabs[fab.hash_str]

    def _beat(self, c: Any, stop: threading.Event, lost: threading.Event) -> None:
        from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest as Req

        while not stop.wait(self.heartbeat_s):
            try:
                ok = c.SendTaskHeartbeat(Req()).success
            except Exception as exc:  # noqa: BLE001 - keep trying until the task ends
                if getattr(getattr(exc, "response", None), "status_code", None) == 401:
                    ok = False  # the task token is gone
                else:
                    log(f"task heartbeat failed: {exc!r}")
                    continue
            self.beats += ok
            if not ok:
                log("the SuperNode refused the task heartbeat (task expired)")
                lost.set()
                return

    def serve(self, token: str) -> None:
        """Run one task (one Message) in this process."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

        from . import client_app

        c = self.client(token)
        self.beats = 0
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._beat, args=(c, stop, lost), daemon=True,
                                name="fedllm-task-heartbeat")
        beat.start()
        context, status, details = None, SubStatus.FAILED, "fedllm worker: task failed"
        t0 = time.perf_counter()
        try:
            message, context, run, fab = pull_input(c)
            t1 = time.perf_counter()
            refused = self.check_fab(fab)
            try:
                if refused:
                    raise PermissionError(refused)
                reply = client_app.app(message=message, context=context)
                status, details = SubStatus.COMPLETED, ""
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                log(f"the ClientApp raised {exc!r}")
                details = f"{type(exc)}:<'{exc}'>"
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                      reason=details), reply_to=message)
            t2 = time.perf_counter()
            if lost.is_set():
                log("the task expired while it ran: its reply is dropped")
            else:
                try:
                    push_message(c, reply, context)
                except Exception as exc:  # noqa: BLE001 - this task is lost, not the worker
                    log(f"pushing the reply failed: {exc!r}")
                    lost.set()
            self.phases = (t1 - t0, t2 - t1, time.perf_counter() - t2)
        finally:
            stop.set()
            if not lost.is_set():
                push_task_output(c, context, status, details)
            c.close()

    def run(self, max_tasks: int | None = None) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        ctl = self.client()
        log(f"serving ClientApp tasks of the SuperNode at {self.address}")
        while max_tasks is None or self.served < max_tasks:
            res = ctl.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
            if not (res.HasField("task") and res.token):
                time.sleep(self.poll)
                continue
            t = time.perf_counter()
            try:
                self.serve(res.token)
            except Exception as exc:  # noqa: BLE001 - reported as a failed task; keep serving
                log(f"task {res.task.task_id} failed: {exc!r}")
            self.served += 1
            from .client_app import STATS

            pull, run, push = self.phases
            log(f"task {res.task.task_id} (run {res.task.run_id}) served in "
                f"{time.perf_counter() - t:.2f} s (pull {pull:.2f}, run {run:.2f}, push "
                f"{push:.2f}, heartbeats {self.beats}); tasks {self.served}, model loads "
                f"{STATS['contexts_built']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fedllm_flower.worker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime-api-address", required=True,
                    help="the SuperNode's Runtime API (its --host:--port), e.g. 127.0.0.1:9094")
    ap.add_argument("--secret-file", help="the SuperNode's --superexec-auth-secret-file")
    ap.add_argument("--supernode-pid", type=int, help="exit when this process is gone")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between AcquireTask calls")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    watch(a.supernode_pid)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    secret = Path(a.secret_file).read_bytes() if a.secret_file else None
    Worker(a.runtime_api_address, secret, poll=a.poll).run()


if __name__ == "__main__":
    main()
