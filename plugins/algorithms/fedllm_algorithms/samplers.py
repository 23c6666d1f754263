"""Client samplers: which clients train each round."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pydantic import Field

from fedllm import Plugin, PluginConfig, Sampler, hookimpl

if TYPE_CHECKING:
    from fedllm.context import RunContext


def reference_sample(clients: list[str], k: int, round: int, seed_offset: int = 0) -> list[str]:
    """SPEC §2: ``random.seed(round)``, ``sorted(random.sample(range(N), K))`` over client
    positions; every client when N <= K."""
    if len(clients) <= k:
        return list(clients)
    rng = random.Random(round + seed_offset)
    return [clients[i] for i in sorted(rng.sample(range(len(clients)), k))]


class UniformConfig(PluginConfig):
    seed_offset: int = Field(
        0, description="Added to the round index to seed the draw; 0 reproduces the reference "
        "(random.seed(round)), independent of the run seed.")


class Uniform(Sampler):
    """Reference sampling (SPEC §2): seed with the round, ``sorted(random.sample(range(N), K))``
    over client positions; every client when N <= K."""

    def __init__(self, config: UniformConfig):
        self.config = config

    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        return reference_sample(clients, ctx.config.clients_per_round, round,
                                self.config.seed_offset)


class EveryoneConfig(PluginConfig):
    pass


class Everyone(Sampler):
    def __init__(self, config: EveryoneConfig):
        self.config = config

    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        return list(clients)


class PoissonConfig(PluginConfig):
    seed_offset: int = Field(0, description="Added to the round index to seed the draw.")


class Poisson(Sampler):
    """Each client joins a round independently with probability q = clients_per_round / N
    (seeded by the round and the cohort): Poisson subsampling, the assumption of the RDP
    accountants of DP-FedAvg and DP-SGD. A round may have no client (the model then stays)."""

    sampling = "poisson"

    def __init__(self, config: PoissonConfig):
        self.config = config

    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        q = min(1.0, ctx.config.clients_per_round / len(clients))
        rng = random.Random(f"poisson:{round + self.config.seed_offset}:{cohort}")
        return [c for c in clients if rng.random() < q]


uniform = Plugin(kind="sampler", name="uniform", factory=Uniform, Config=UniformConfig,
                 description="K clients uniformly at random per round, seeded by the round.")
everyone = Plugin(kind="sampler", name="all", factory=Everyone, Config=EveryoneConfig,
                  description="Every client, every round (clients_per_round is ignored).")
poisson = Plugin(kind="sampler", name="poisson", factory=Poisson, Config=PoissonConfig,
                 description="Poisson subsampling: each client joins with probability "
                 "clients_per_round/N (what DP accountants assume); a round may be empty.")
