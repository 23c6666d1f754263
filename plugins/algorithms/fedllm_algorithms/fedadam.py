"""FedAdam (Reddi et al. 2021) as in FedLLM-Bench's code (SPEC §3).

Δ and m as FedYogi; v ← β2 v + (1−β2) m² (no bias correction); θ += η_s m / (√v + τ_s);
v starts at τ_s². ``form: paper`` squares Δ instead of m and starts m at 0 (Reddi et al.).
"""

from __future__ import annotations

from fedllm import Plugin

from .fedopt import AdaptiveServerOpt, momentum
from .fedyogi import FedYogiConfig


class FedAdamConfig(FedYogiConfig):
    pass


class FedAdam(AdaptiveServerOpt):
    def _first(self, state, name, delta):
        c = self.config
        return momentum(state, name, delta, c.beta1,
                        first="delta" if c.form == "reference" else "zero")

    def _second(self, v, m, delta):
        sq = m * m if self.config.form == "reference" else delta * delta
        b2 = self.config.beta2
        return b2 * v + (1 - b2) * sq


plugin = Plugin(kind="algorithm", name="fedadam", factory=FedAdam, Config=FedAdamConfig,
                description="FedAdam: server Adam (no bias correction) on the unweighted mean "
                "client delta.")
