"""FedProx (Li et al. 2020): each client's loss gets μ/2 · ‖θ − θ_t‖² over the trainable
tensors (θ_t: the round's global adapter); the server aggregates as FedAvg.

The term is added through ``fedllm_loss_terms``, so any local update that calls the hook (the
core's loop, or a task's own) gets it; nothing here copies the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import (
    Algorithm,
    ClientInstruction,
    ClientUpdate,
    Plugin,
    PluginConfig,
    hookimpl,
)
from fedllm.aggregation import weighted_params
from fedllm.messages import Params

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext


class FedProxConfig(PluginConfig):
    mu: float = Field(0.01, ge=0, description="Proximal coefficient μ (reference default 0.01).")


class FedProx(Algorithm):
    aggregation_weights = "samples"

    def __init__(self, config: FedProxConfig):
        self.config = config
        # θ_t on the model's device, per client being trained in this process
        self._anchor: dict[str, dict[str, torch.Tensor]] = {}

    @hookimpl
    def fedllm_client_begin(self, ctx: RunContext, instruction: ClientInstruction,
                            params: dict[str, torch.nn.Parameter]) -> None:
        self._anchor[instruction.client_id] = {
            k: instruction.params[k].to(p.device, p.dtype) for k, p in params.items()}

    @hookimpl
    def fedllm_loss_terms(self, ctx: RunContext, instruction: ClientInstruction,
                          params: dict[str, torch.nn.Parameter]) -> torch.Tensor | None:
        anchor = self._anchor.get(instruction.client_id)
        if anchor is None:  # a local update that skipped fedllm_client_begin
            anchor = {k: instruction.params[k].to(p.device, p.dtype) for k, p in params.items()}
            self._anchor[instruction.client_id] = anchor
        sq = sum(((p - anchor[k]) ** 2).sum() for k, p in params.items())
        return self.config.mu / 2 * sq  # type: ignore[return-value]

    @hookimpl
    def fedllm_client_end(self, ctx: RunContext, instruction: ClientInstruction,
                          update: ClientUpdate) -> None:
        self._anchor.pop(instruction.client_id, None)

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        return weighted_params(updates)


plugin = Plugin(kind="algorithm", name="fedprox", factory=FedProx, Config=FedProxConfig,
                description="FedProx: proximal term μ/2‖θ−θ_t‖² in the local loss; FedAvg "
                "aggregation.")
