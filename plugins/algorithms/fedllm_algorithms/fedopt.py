"""Shared machinery of the server-optimizer family (FedAvgM, FedAdagrad, FedYogi, FedAdam).

Each of them turns the round's client deltas into one pseudo-gradient Δ, then updates server
moments kept in the cohort's ``state`` dict (the engine checkpoints it, so ``--resume``
continues with the same moments). Moments are float32 tensors named ``m/<param>`` and
``v/<param>``; they are created on the first aggregation of a cohort (the reference's round 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Algorithm, PluginConfig, hookimpl
from fedllm.aggregation import mean_delta
from fedllm.errors import FedLLMError
from fedllm.messages import ClientUpdate, Params

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext


class ServerOptConfig(PluginConfig):
    """Fields common to the adaptive rules (FedAdagrad, FedYogi, FedAdam)."""

    eta: float = Field(1e-3, gt=0, description="Server learning rate η_s (reference fedopt_eta).")
    tau: float = Field(1e-3, gt=0, description="Adaptivity τ_s: added to √v, and v starts at "
                       "τ_s² (reference fedopt_tau).")
    weighted: bool = Field(False, description="Weight client deltas by sample count. The "
                           "reference averages them unweighted (False); FedAvgM is always "
                           "weighted.")


def pseudo_gradient(updates: Iterable[ClientUpdate], global_params: Params,
                    weighted: bool) -> Params:
    """Δ = Σ p_k Δ_k (weighted) or mean_k Δ_k, streamed, in float32."""
    try:
        delta, _ = mean_delta(updates, global_params, weighted=weighted)
    except ValueError as exc:
        raise FedLLMError(f"cannot aggregate this round: {exc}") from None
    return delta


def moment(state: dict, kind: str, name: str) -> torch.Tensor | None:
    return state.get(f"{kind}/{name}")


def set_moment(state: dict, kind: str, name: str, value: torch.Tensor) -> None:
    state[f"{kind}/{name}"] = value.detach().to("cpu").float()


def momentum(state: dict, name: str, delta: torch.Tensor, beta1: float,
             first: str = "delta") -> torch.Tensor:
    """The reference's first moment: ``m = Δ`` on the first aggregation, then
    ``m ← β1 m + (1−β1) Δ``. ``first="zero"`` starts from ``m = 0`` instead (Reddi et al.)."""
    m = moment(state, "m", name)
    if m is None:
        m = delta.clone() if first == "delta" else (1 - beta1) * delta
    else:
        m = beta1 * m + (1 - beta1) * delta
    set_moment(state, "m", name, m)
    return m


class AdaptiveServerOpt(Algorithm):
    """FedAdagrad / FedYogi / FedAdam: ``θ += η_s · m / (√v + τ_s)`` with v from ``_second``."""

    def __init__(self, config):
        self.config = config
        self.aggregation_weights: Literal["samples", "uniform"] | None = (
            "samples" if config.weighted else "uniform")

    def _first(self, state: dict, name: str, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _second(self, v: torch.Tensor, m: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, global_params: Params, delta: Params, state: dict) -> Params:
        """One server step from the pseudo-gradient (also used directly by unit tests)."""
        import torch

        c = self.config
        out: Params = {}
        for name, theta in global_params.items():
            d = delta[name].float()
            m = self._first(state, name, d)
            v = moment(state, "v", name)
            if v is None:
                v = torch.full_like(d, c.tau ** 2)
            v = self._second(v, m, d)
            set_moment(state, "v", name, v)
            out[name] = theta.float() + c.eta * m / (v.sqrt() + c.tau)
        return out

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        delta = pseudo_gradient(updates, global_params, self.config.weighted)
        return self.step(global_params, delta, state)
