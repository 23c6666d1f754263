"""FedAvg with a server learning rate: θ_{t+1} = θ_t + η_s · Σ_k p_k (θ_k − θ_t).

η_s = 1 is FedAvg; η_s < 1 damps each round's step, η_s > 1 extrapolates it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Algorithm, ClientUpdate, Plugin, PluginConfig, hookimpl
from fedllm.aggregation import mean_delta

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.messages import Params


class Config(PluginConfig):
    server_lr: float = Field(1.0, ge=0, description="Server learning rate η_s.")


class FedAvgSLR(Algorithm):
    # the rule uses the updates only through their sample-weighted mean
    aggregation_weights = "samples"

    def __init__(self, config: Config):
        self.config = config

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        delta, _ = mean_delta(updates, global_params, weighted=True)
        return {k: global_params[k] + self.config.server_lr * delta[k] for k in global_params}


plugin = Plugin(kind="algorithm", name="fedavg-slr", factory=FedAvgSLR, Config=Config,
                description="FedAvg with a server learning rate (example third-party plugin).")
