"""FedAdam (Reddi et al. 2021) as in FedLLM-Bench's code (SPEC §3).

Δ and m as FedYogi; v ← β2 v + (1−β2) m² (no bias correction); θ += η_s m / (√v + τ_s);
v starts at τ_s². ``form: paper`` squares Δ instead of m and starts m at 0 (Reddi et al.).
"""

from __future__ import annotations

from fedllm import Plugin

from .fedyogi import FedYogi, FedYogiConfig


class FedAdamConfig(FedYogiConfig):
    pass


class FedAdam(FedYogi):
    """Yogi's momentum; only the second-moment rule differs."""

    def _second(self, v, m, delta):
        sq = m * m if self.config.form == "reference" else delta * delta
        b2 = self.config.beta2
        return b2 * v + (1 - b2) * sq


plugin = Plugin(kind="algorithm", name="fedadam", factory=FedAdam, Config=FedAdamConfig,
                description="FedAdam: server Adam (no bias correction) on the unweighted mean "
                "client delta.")
