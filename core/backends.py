"""Where a client's local update runs.

The engine hands a backend an iterable of :class:`ClientInstruction` and folds the
:class:`ClientUpdate` messages it yields as they come. A backend is a component like any
other (entry-point group ``fedllm.backends``); the core ships ``in-process``, which runs every
client in this process on the one shared base model. Other backends (worker processes, Flower
SuperNodes) run :func:`run_client` wherever the client's data lives.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from .context import RunContext
from .errors import FedLLMError
from .messages import ClientInstruction, ClientUpdate
from .plugins import Plugin, PluginConfig


class Backend(Protocol):
    """Optional attributes the engine reads after each cohort's round, when present:
    ``dropped`` (ids of clients that never answered; the round completes without them) and
    ``last_stats`` (numbers added to the round's record, e.g. bytes on the wire)."""

    def start(self, ctx: RunContext) -> None: ...
    def run_clients(self, instructions: Iterable[ClientInstruction]) -> Iterator[ClientUpdate]: ...
    def close(self) -> None: ...


def run_client(ctx: RunContext, instruction: ClientInstruction) -> ClientUpdate:
    """The whole client side of a round: local update, algorithm extras, privacy."""
    data = ctx.client_data(instruction.client_id)
    update = ctx.hook.fedllm_local_update(ctx=ctx, instruction=instruction, data=data)
    if update is None:
        raise FedLLMError("no plugin returned an update from fedllm_local_update")
    ctx.hook.fedllm_client_end(ctx=ctx, instruction=instruction, update=update)
    ctx.call_in_order("privacy", "fedllm_privatize", ctx=ctx, instruction=instruction,
                      update=update)
    return update


class InProcessBackend:
    """Clients run one after another in this process, sharing the loaded base model."""

    def start(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def run_clients(self, instructions: Iterable[ClientInstruction]) -> Iterator[ClientUpdate]:
        for ins in instructions:
            yield run_client(self.ctx, ins)

    def close(self) -> None:
        pass


class InProcessConfig(PluginConfig):
    pass


plugin = Plugin(kind="backend", name="in-process",
                description="Run clients sequentially in this process on one shared base model.",
                factory=lambda cfg: InProcessBackend(), Config=InProcessConfig)
