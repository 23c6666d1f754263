"""FedYogi (Reddi et al. 2021) as in FedLLM-Bench's code (SPEC §3).

Δ = mean_k Δ_k (unweighted); m ← β1 m + (1−β1) Δ (m = Δ on the first round);
v ← v − (1−β2) m² sign(v − m²); θ += η_s m / (√v + τ_s); v starts at τ_s².
The reference squares the momentum m, not Δ; ``form: paper`` uses Reddi et al.'s Δ² and m₀ = 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedllm import Plugin

from .fedopt import AdaptiveServerOpt, ServerOptConfig, momentum


class FedYogiConfig(ServerOptConfig):
    beta1: float = Field(0.5, ge=0, lt=1, description="First-moment decay β1 (FedLLM-Bench's "
                         "default 0.5; OpenFedLLM and Reddi et al. use 0.9).")
    beta2: float = Field(0.99, ge=0, lt=1, description="Second-moment decay β2.")
    form: Literal["reference", "paper"] = Field(
        "reference", description="'reference': FedLLM-Bench's code (v from m², m = Δ on the "
        "first round); 'paper': Reddi et al. (v from Δ², m starts at 0).")


class FedYogi(AdaptiveServerOpt):
    def _first(self, state, name, delta):
        c = self.config
        return momentum(state, name, delta, c.beta1,
                        first="delta" if c.form == "reference" else "zero")

    def _second(self, v, m, delta):
        sq = m * m if self.config.form == "reference" else delta * delta
        return v - (1 - self.config.beta2) * sq * (v - sq).sign()


plugin = Plugin(kind="algorithm", name="fedyogi", factory=FedYogi, Config=FedYogiConfig,
                description="FedYogi: server Yogi on the unweighted mean client delta.")
