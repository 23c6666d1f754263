"""FedAvg (McMahan et al. 2017): θ_{t+1} = Σ_k p_k θ_k with p_k = n_k / Σ_j n_j."""

from __future__ import annotations

from fedllm import Plugin, PluginConfig, hookimpl
from fedllm.aggregation import weighted_params


class FedAvgConfig(PluginConfig):
    pass


class FedAvg:
    def __init__(self, config: FedAvgConfig):
        self.config = config

    @hookimpl
    def fedllm_aggregate(self, updates):
        return weighted_params(updates)

    @hookimpl
    def fedllm_aggregation_weights(self):
        return "samples"  # a weighted mean: secure aggregation may hide the updates


plugin = Plugin(kind="algorithm", name="fedavg", factory=FedAvg, Config=FedAvgConfig,
                description="FedAvg: sample-count weighted average of client adapters.")
