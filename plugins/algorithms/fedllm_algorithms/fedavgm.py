"""FedAvgM (Hsu et al. 2019) as in FedLLM-Bench's code (SPEC §3).

Δ = Σ p_k Δ_k (sample-weighted); m ← β1 m + (1−β1) Δ (m = Δ on the first round);
θ_{t+1} = θ_t + m. The reference's momentum is an EMA with no server learning rate;
``form: paper`` uses Hsu et al.'s heavy ball, m ← β m + Δ, θ += η_s m.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Algorithm, ClientUpdate, Plugin, PluginConfig, hookimpl
from fedllm.messages import Params

from .fedopt import moment, momentum, pseudo_gradient, set_moment

if TYPE_CHECKING:
    from fedllm.context import RunContext


class FedAvgMConfig(PluginConfig):
    beta1: float = Field(0.5, ge=0, lt=1, description="Server momentum β1 (FedLLM-Bench's "
                         "default 0.5; OpenFedLLM uses 0.9).")
    form: Literal["reference", "paper"] = Field(
        "reference", description="'reference': EMA m ← β1 m + (1−β1) Δ, θ += m; 'paper': "
        "heavy ball m ← β1 m + Δ, θ += server_lr · m (Hsu et al.).")
    server_lr: float = Field(1.0, gt=0, description="Server learning rate of the 'paper' form "
                             "(the reference form has none, i.e. 1).")


class FedAvgM(Algorithm):
    aggregation_weights = "samples"  # the momentum step needs only the weighted mean delta

    def __init__(self, config: FedAvgMConfig):
        self.config = config

    def step(self, global_params, delta, state):
        c = self.config
        out = {}
        for name, theta in global_params.items():
            d = delta[name].float()
            if c.form == "reference":
                m = momentum(state, name, d, c.beta1)
                out[name] = theta.float() + m
            else:
                prev = moment(state, "m", name)
                m = d if prev is None else c.beta1 * prev + d
                set_moment(state, "m", name, m)
                out[name] = theta.float() + c.server_lr * m
        return out

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        return self.step(global_params, pseudo_gradient(updates, global_params, True), state)


plugin = Plugin(kind="algorithm", name="fedavgm", factory=FedAvgM, Config=FedAvgMConfig,
                description="FedAvgM: server momentum on the sample-weighted mean client delta.")
