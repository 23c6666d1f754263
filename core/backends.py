"""Where a client's local update runs.

The engine hands a backend component an iterable of :class:`ClientInstruction` per cohort and
round (``fedllm_run_clients``) and folds the :class:`ClientUpdate` messages of the returned
:class:`RoundReport` as they come. The core ships ``in-process``, which runs every client in
this process on the one shared base model; other backends (worker processes, Flower
SuperNodes) run :func:`run_client` wherever the client's data lives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .contract import Backend, hookimpl
from .errors import FedLLMError
from .messages import ClientInstruction, ClientUpdate, RoundReport
from .pluginconfig import PluginConfig
from .plugins import Plugin

if TYPE_CHECKING:
    from .context import RunContext


def run_client(ctx: RunContext, instruction: ClientInstruction) -> ClientUpdate:
    """The whole client side of a round: decode, local update, algorithm extras, privacy,
    encode (the codecs' steps do nothing without codecs)."""
    from .codecs import decode_instruction, encode_update
    from .trainer import local_update

    instruction = decode_instruction(ctx, instruction)
    data = ctx.client_data(instruction.client_id)
    if ctx.plugins.provider("fedllm_local_update") is not None:
        update = ctx.call("fedllm_local_update", instruction=instruction, data=data)
    else:
        update = local_update(ctx, instruction, data)
    if update is None:
        raise FedLLMError("the task's fedllm_local_update returned no update")
    ctx.call("fedllm_client_end", instruction=instruction, update=update)
    ctx.each("fedllm_privatize", instruction=instruction, update=update)
    return encode_update(ctx, instruction, update)


class InProcess(Backend):
    """Clients run one after another in this process, sharing the loaded base model."""

    def __init__(self, config: PluginConfig):
        self.config = config

    @hookimpl
    def fedllm_run_clients(self, ctx: RunContext, cohort: str, round: int,
                           instructions: Iterable[ClientInstruction]) -> RoundReport:
        def updates() -> Iterator[ClientUpdate]:
            for ins in instructions:
                yield run_client(ctx, ins)

        return RoundReport(updates())


class InProcessConfig(PluginConfig):
    pass


plugin = Plugin(kind="backend", name="in-process",
                description="Run clients sequentially in this process on one shared base model.",
                factory=InProcess, Config=InProcessConfig)
