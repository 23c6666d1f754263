"""FedAvg (McMahan et al. 2017): θ_{t+1} = Σ_k p_k θ_k with p_k = n_k / Σ_j n_j."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fedllm import Algorithm, ClientUpdate, Plugin, PluginConfig, hookimpl
from fedllm.aggregation import weighted_params
from fedllm.messages import Params

if TYPE_CHECKING:
    from fedllm.context import RunContext


class FedAvgConfig(PluginConfig):
    pass


class FedAvg(Algorithm):
    aggregation_weights = "samples"  # a weighted mean: secure aggregation may hide updates

    def __init__(self, config: FedAvgConfig):
        self.config = config

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        return weighted_params(updates)


plugin = Plugin(kind="algorithm", name="fedavg", factory=FedAvg, Config=FedAvgConfig,
                description="FedAvg: sample-count weighted average of client adapters.")
