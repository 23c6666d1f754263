"""A fedllm backend over a Flower ``Grid``: instructions go out as Messages, updates stream back.

Our engine keeps sampling and aggregation (no Flower strategy): this backend only maps each
sampled client to the SuperNode that holds its data, pushes one ``train`` Message per client and
yields each decoded :class:`ClientUpdate` as soon as its reply arrives. Clients whose node does
not answer within ``round_timeout`` (or answers with an error) are reported in ``dropped``; the
round fails only when fewer than ``min_clients`` answered.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from flwr.app import ConfigRecord, Message, RecordDict
from pydantic import Field

from fedllm import Plugin, PluginConfig
from fedllm.context import RunContext
from fedllm.errors import FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate

from .codec import decode_update, encode_instruction, wire_bytes
from .secagg import SecAggConfig, check_run, secure_round

#: the Grid of the ServerApp this process runs in (set by fedllm_flower.server_app)
CURRENT_GRID: Any = None


class GridConfig(PluginConfig):
    round_timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for a round's replies (None: wait for all).")
    min_clients: int = Field(
        1, ge=1, description="Fewest answering clients a round may complete with.")
    wait_nodes: float = Field(
        60.0, gt=0, description="Seconds to wait at start for the SuperNodes to connect.")
    ordered: bool = Field(
        True, description="Fold updates in sampling order (reproducible: the in-process result "
        "bit for bit) instead of arrival order (holds fewer updates in memory).")
    num_nodes: int | None = Field(
        None, ge=1, description="SuperNodes to wait for before the first round (None: 1; "
        "flower-sim: num_supernodes).")
    secure_aggregation: SecAggConfig | None = Field(
        None, description="Flower SecAgg+ (e.g. `{}` for the defaults): the coordinator "
        "learns only the round's weighted mean of each SuperNode's update; needs an algorithm "
        "that declares a weighted-mean aggregate and clients on at least 2 nodes per round.")


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
    for r in grid.send_and_receive(msgs, timeout=wait):
        if r.has_error():
            continue
        raw = str(r.content["fedllm"]["clients"])
        nodes[r.metadata.src_node_id] = [c for c in raw.split(",") if c]
    if not nodes:
        raise FedLLMError("no SuperNode answered the client query")
    return nodes


class GridBackend:
    def __init__(self, config: GridConfig, grid: Any = None):
        self.config = config
        self.grid = grid
        self.dropped: list[str] = []
        self.last_stats: dict[str, float] = {}

    # -- setup ------------------------------------------------------------------------------

    def preflight(self, ctx: RunContext) -> None:
        """Config checks that need the run's plugins, before any process or node is awaited."""
        self.ctx = ctx
        if self.config.secure_aggregation is not None:
            self.weights = check_run(ctx, self.config.secure_aggregation)

    def start(self, ctx: RunContext) -> None:
        self.preflight(ctx)
        if self.grid is None:
            self.grid = CURRENT_GRID
        if self.grid is None:
            raise FedLLMError("runtime.backend 'flower' runs only inside `fedllm serve` "
                              "(a Flower ServerApp); use 'flower-sim' or 'in-process' here")
        self.nodes = self._discover()
        self.node_of = assign(list(ctx.dataset.client_ids), self.nodes)

    def expected_nodes(self) -> int:
        return self.config.num_nodes or 1

    def _discover(self) -> dict[int, list[str]]:
        return discover(self.grid, self.expected_nodes(), self.config.wait_nodes)

    # -- rounds -----------------------------------------------------------------------------

    def run_clients(self, instructions: Iterable[ClientInstruction]) -> Iterator[ClientUpdate]:
        # the node keeps per-client state back to the coordinator's last checkpoint, so that a
        # resumed coordinator finds every client's state as of that checkpoint
        config = {**self.ctx.resolved.to_dict(), "_run_dir": str(self.ctx.run_dir or ""),
                  "_checkpointed_round": self.ctx.client_state.checkpointed_round}
        config.pop("plugins", None)
        self.dropped = []
        if self.config.secure_aggregation is not None:
            yield from secure_round(self, list(instructions), config)
            return
        # A SuperNode runs one message at a time: queue each node's clients and send the next
        # one when the previous one answered (nodes still work in parallel).
        queues: dict[int, list[tuple[str, Message]]] = {}
        down = up = answered = total = 0
        sent_order: list[str] = []
        for ins in instructions:
            sent_order.append(ins.client_id)
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
        order = list(sent_order)
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
                if cid is None:
                    continue
                send_next(node)
                ready[cid] = None
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
        self.dropped = sorted({c for c, _ in pending.values()} | set(errors) | set(unsent))
        self.last_stats = {"wire_bytes_down": down, "wire_bytes_up": up}
        for cid, why in errors.items():
            self.ctx.console.print(f"[yellow]warning:[/] client {cid} failed: {why}")
        if answered < min(self.config.min_clients, total):
            detail = "; ".join(f"{c}: {e}" for c, e in errors.items())
            raise FedLLMError(f"only {answered} of {total} clients answered (min_clients="
                              f"{self.config.min_clients}); dropped {self.dropped}"
                              + (f" ({detail})" if detail else ""))

    def close(self) -> None:
        pass


plugin = Plugin(kind="backend", name="flower", factory=GridBackend, Config=GridConfig,
                description="Clients are Flower SuperNodes (used by `fedllm serve`).")
