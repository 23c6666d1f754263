"""A fedllm backend over a Flower ``Grid``: instructions go out as Messages, updates stream back.

Our engine keeps sampling and aggregation (no Flower strategy): this backend only maps each
sampled client to the SuperNode that holds its data, pushes one ``train`` Message per client and
yields each decoded :class:`ClientUpdate` as soon as its reply arrives. Clients whose node does
not answer within ``round_timeout`` (or answers with an error) are reported in the round's
``dropped``; the round fails only when fewer than ``min_clients`` answered.

The Grid comes from the Flower ServerApp that runs the engine (``fedllm serve``, see
``server_app.py``), or from the simulation (``sim.py``). Flower is imported only when a round
runs, so listing and validating this component costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fedllm import Backend, Plugin, RoundReport, hookimpl
from fedllm.errors import FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate

from .options import SECAGG_FIELD, GridConfig

MODEL_LOADS = "model_loads"  # = client_app.MODEL_LOADS (that module imports Flower)

if TYPE_CHECKING:
    from fedllm.context import RunContext


def assign(clients: list[str], nodes: dict[int, list[str]]) -> dict[str, int]:
    """Client -> node: a node's own clients (``fedllm join --client-id``); clients no node
    claims go round-robin to the nodes that claim none (any node can serve them)."""
    out: dict[str, int] = {}
    for nid, mine in sorted(nodes.items()):
        for c in mine:
            if c in out:
                raise FedLLMError(f"client {c!r} is claimed by two SuperNodes "
                                  f"({out[c]} and {nid}); give each --client-id once")
            out[c] = nid
    free = [n for n, mine in sorted(nodes.items()) if not mine]
    rest = [c for c in clients if c not in out]
    if rest and not free:
        raise FedLLMError(f"no connected SuperNode holds client(s) {rest[:5]}; start "
                          f"`fedllm join --client-id ...` for them")
    for i, c in enumerate(rest):
        out[c] = free[i % len(free)]
    return out


def discover(grid: Any, want: int, wait: float) -> dict[int, list[str]]:
    """Wait for ``want`` SuperNodes, then ask each which clients it holds (node -> ids)."""
    from flwr.app import ConfigRecord, Message, RecordDict

    deadline = time.monotonic() + wait
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= want:
            break
        if time.monotonic() > deadline:
            raise FedLLMError(f"only {len(ids)} of {want} SuperNodes connected within "
                              f"{wait:g} s")
        time.sleep(0.5)
    msgs = [Message(RecordDict({"fedllm": ConfigRecord({"q": "clients"})}),
                    dst_node_id=n, message_type="query") for n in ids]
    nodes: dict[int, list[str]] = {}
    for r in exchange(grid, msgs, wait):
        if r.has_error():
            continue
        raw = str(r.content["fedllm"]["clients"])
        nodes[r.metadata.src_node_id] = [c for c in raw.split(",") if c]
    if not nodes:
        raise FedLLMError("no SuperNode answered the client query")
    return nodes


def exchange(grid: Any, messages: list[Any], timeout: float, poll: float = 0.1) -> list[Any]:
    """``grid.send_and_receive`` with a short poll (Flower's ``HttpGrid`` sleeps 3 s between
    pulls): the replies that arrived within ``timeout``."""
    pending = set(grid.push_messages(messages))
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(list(pending)))
        for r in got:
            pending.discard(r.metadata.reply_to_message_id)
        out += got
        if pending and not got:
            time.sleep(poll)
    return out


def secagg_problems(ctx: RunContext) -> list[str]:
    """What SecAgg+ cannot hide: an algorithm without a weighted-mean aggregate, a privacy
    component that treats each update on the coordinator."""
    algo = ctx.plugins.one("algorithm")
    out = []
    if algo.cap("aggregation_weights") not in ("samples", "uniform"):
        out.append(
            f"{SECAGG_FIELD}: algorithm {algo.name!r} needs each client's individual update (it "
            "declares no weighted-mean aggregate, capability aggregation_weights), but SecAgg+ "
            "shows the coordinator only the sum. Use an algorithm whose server rule is a "
            "weighted sum of updates or drop secure_aggregation.")
    for p in ctx.plugins.of("privacy"):
        if p.implements("fedllm_privatize_updates"):
            out.append(
                f"{SECAGG_FIELD}: privacy {p.name!r} treats each client's update on the "
                "coordinator (fedllm_privatize_updates), which SecAgg+ hides from it; use a "
                "client-side mechanism with secure aggregation.")
    return out


class GridBackend(Backend):
    def __init__(self, config: GridConfig, grid: Any = None):
        self.config = config
        self.grid = grid
        self.nodes: dict[int, list[str]] | None = None
        self.node_of: dict[str, int] = {}

    def use_grid(self, grid: Any) -> None:
        """The Grid of the ServerApp this backend runs in (``fedllm serve``)."""
        self.grid = grid

    # -- before the run ---------------------------------------------------------------------

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        if self.config.secure_aggregation is None:
            return None
        from .secagg import workflow

        out = secagg_problems(ctx)
        try:
            workflow(self.config.secure_aggregation, None)  # Flower's own checks of the numbers
        except FedLLMError as exc:
            out.append(str(exc))
        return out

    def expected_nodes(self) -> int:
        return self.config.num_nodes or 1

    def _require_grid(self) -> Any:
        if self.grid is None:
            raise FedLLMError("runtime.backend 'flower' runs only inside `fedllm serve` "
                              "(a Flower ServerApp); use 'flower-sim' or 'in-process' here")
        return self.grid

    @hookimpl
    def fedllm_node_clients(self, ctx: RunContext) -> dict[str, list[str]] | None:
        if self.nodes is None:
            self.nodes = discover(self._require_grid(), self.expected_nodes(),
                                  self.config.wait_nodes)
        return {str(n): ids for n, ids in self.nodes.items()}

    @hookimpl
    def fedllm_backend_start(self, ctx: RunContext) -> None:
        self._require_grid()
        self.fedllm_node_clients(ctx)
        assert self.nodes is not None
        self.node_of = assign(list(ctx.dataset.client_ids), self.nodes)

    @hookimpl
    def fedllm_backend_close(self, ctx: RunContext) -> None:
        pass

    # -- rounds -----------------------------------------------------------------------------

    @hookimpl
    def fedllm_run_clients(self, ctx: RunContext, cohort: str, round: int,
                           instructions: Iterable[ClientInstruction]) -> RoundReport:
        # the node keeps per-client state back to the coordinator's last checkpoint, so that a
        # resumed coordinator finds every client's state as of that checkpoint
        config = {**ctx.resolved.to_dict(), "_run_dir": str(ctx.run_dir or ""),
                  "_checkpointed_round": ctx.client_state.checkpointed_round}
        config.pop("plugins", None)
        report = RoundReport(iter(()))
        if self.config.secure_aggregation is not None:
            from .secagg import secure_round

            algo = ctx.plugins.one("algorithm")
            report.updates = secure_round(
                report, self.grid, self.node_of, list(instructions), config,
                self.config.secure_aggregation, algo.cap("aggregation_weights"),
                self.config.round_timeout, self.config.min_clients, ctx.console)
        else:
            report.updates = self._round(report, ctx, instructions, config)
        return report

    def _round(self, report: RoundReport, ctx: RunContext,
               instructions: Iterable[ClientInstruction],
               config: dict[str, Any]) -> Iterator[ClientUpdate]:
        from flwr.app import Message

        from .codec import decode_update, encode_instruction, wire_bytes

        # A SuperNode runs one message at a time: queue each node's clients and send the next
        # one when the previous one answered (nodes still work in parallel).
        queues: dict[int, list[tuple[str, Any]]] = {}
        down = up = answered = total = loads = 0
        order: list[str] = []
        for ins in instructions:
            order.append(ins.client_id)
            node = self.node_of.get(ins.client_id)
            if node is None:
                raise FedLLMError(f"no SuperNode serves client {ins.client_id!r}")
            content = encode_instruction(ins, config)
            down += wire_bytes(content)
            total += 1
            queues.setdefault(node, []).append(
                (ins.client_id, Message(content, dst_node_id=node, message_type="train",
                                        group_id=str(ins.round))))
        pending: dict[str, tuple[str, int]] = {}  # message id -> (client id, node)
        ready: dict[str, ClientUpdate | None] = {}  # arrived (None: failed), not yet yielded
        nxt = 0

        def release(final: bool = False) -> Iterator[ClientUpdate]:
            """Yield arrived updates: in sampling order when ``ordered``, else at once."""
            nonlocal nxt
            if not self.config.ordered:
                for cid in list(ready):
                    u = ready.pop(cid)
                    if u is not None:
                        yield u
                return
            while nxt < len(order) and (order[nxt] in ready or final):
                u = ready.pop(order[nxt], None)
                nxt += 1
                if u is not None:
                    yield u

        def send_next(node: int) -> None:
            # One push per message: with a round's messages pushed together (Flower then stores
            # the adapter they share once), the survivor of a node killed mid-round never
            # answered (test_flower_dropout failed 2 times in 4)
            if queues.get(node):
                cid, msg = queues[node].pop(0)
                (mid,) = list(self.grid.push_messages([msg]))
                pending[mid] = (cid, node)

        for node in list(queues):
            send_next(node)
        errors: dict[str, str] = {}
        deadline = (time.monotonic() + self.config.round_timeout
                    if self.config.round_timeout else None)
        while pending:
            got = list(self.grid.pull_messages(list(pending)))
            for rep in got:
                cid, node = pending.pop(rep.metadata.reply_to_message_id, (None, None))
                if cid is None or node is None:
                    continue
                send_next(node)
                ready[cid] = None
                if not rep.has_error():
                    loads += int(rep.content["fedllm"].get(MODEL_LOADS, 0))
                if rep.has_error():
                    errors[cid] = f"{rep.error.code}: {rep.error.reason}"
                elif "error" in rep.content["fedllm"]:
                    errors[cid] = str(rep.content["fedllm"]["error"])
                else:
                    up += wire_bytes(rep.content)
                    answered += 1
                    ready[cid] = decode_update(rep.content)
            yield from release()
            if not pending:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            if not got:
                time.sleep(0.1)
        yield from release(final=True)
        unsent = [cid for q in queues.values() for cid, _ in q]
        report.dropped = sorted({c for c, _ in pending.values()} | set(errors) | set(unsent))
        # contexts (model + data) the clients' processes built for this round: 0 once warm
        report.stats = {"wire_bytes_down": down, "wire_bytes_up": up,
                        "client_model_loads": loads}
        for cid, why in errors.items():
            ctx.console.print(f"[yellow]warning:[/] client {cid} failed: {why}")
        if answered < min(self.config.min_clients, total):
            detail = "; ".join(f"{c}: {e}" for c, e in errors.items())
            raise FedLLMError(f"only {answered} of {total} clients answered (min_clients="
                              f"{self.config.min_clients}); dropped {report.dropped}"
                              + (f" ({detail})" if detail else ""))


plugin = Plugin(kind="backend", name="flower", factory=GridBackend, Config=GridConfig,
                description="Clients are Flower SuperNodes (used by `fedllm serve`).")
