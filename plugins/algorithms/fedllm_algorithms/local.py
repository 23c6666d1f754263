"""Local training: one chosen client trains alone; its adapter is the result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Algorithm, ClientUpdate, Plugin, PluginConfig, hookimpl
from fedllm.errors import ConfigError
from fedllm.messages import Params

if TYPE_CHECKING:
    from fedllm.context import RunContext


class LocalConfig(PluginConfig):
    client: str | int = Field(
        0, description="The client that trains: its id (a string; quote numeric ids) or its "
        "index in dataset order (an integer).")


class Local(Algorithm):
    def __init__(self, config: LocalConfig):
        self.config = config

    def _pick(self, clients: list[str]) -> str:
        c = self.config.client
        if isinstance(c, int):
            if not 0 <= c < len(clients):
                raise ConfigError(f"algorithm.client: index {c} is out of range "
                                  f"(0..{len(clients) - 1})")
            return clients[c]
        if c not in clients:
            raise ConfigError(f"algorithm.client: {c!r} is not a client; clients are "
                              f"{', '.join(clients[:10])}{' ...' if len(clients) > 10 else ''}")
        return c

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        if ctx.dataset is None:
            return None
        try:
            self._pick(ctx.dataset.client_ids)
        except ConfigError as exc:
            return [str(exc)]
        return None

    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        return [self._pick(clients)]

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        (only,) = list(updates)
        return dict(only.params)


plugin = Plugin(kind="algorithm", name="local", factory=Local, Config=LocalConfig,
                description="Local training: one client, no aggregation (θ_{t+1} = θ_k).")
