"""FedAdagrad (Reddi et al. 2021) as in FedLLM-Bench's code (SPEC §3).

Δ = mean_k Δ_k (unweighted); v ← v + Δ²; θ += η_s Δ / (√v + τ_s); v starts at τ_s².
The reference uses no first moment, which is Reddi et al.'s rule with β1 = 0.
"""

from __future__ import annotations

from fedllm import Plugin

from .fedopt import AdaptiveServerOpt, ServerOptConfig


class FedAdagradConfig(ServerOptConfig):
    pass


class FedAdagrad(AdaptiveServerOpt):
    def _first(self, state, name, delta):
        return delta

    def _second(self, v, m, delta):
        return v + delta * delta


plugin = Plugin(kind="algorithm", name="fedadagrad", factory=FedAdagrad, Config=FedAdagradConfig,
                description="FedAdagrad: server Adagrad on the unweighted mean client delta.")
