"""SCAFFOLD (Karimireddy et al. 2020) as in FedLLM-Bench's code (SPEC §3).

Client k, after every optimizer step: θ ← θ − η (c − c_k), with η the round's learning rate.
After τ steps: c_k⁺ = c_k − c + (θ_t − θ_k) / (τ η); the client keeps c_k⁺ and uploads
c_k⁺ − c_k. Server: θ as FedAvg (sample-weighted), c ← c + (1/N) Σ_{k∈S_t} (c_k⁺ − c_k) with N
the number of clients in the cohort. c and every c_k start at 0.

Where the state lives:

* ``c`` is server state (``state["c/<param>"]``), checkpointed by the engine and sent down in
  ``instruction.extras["scaffold_c"]``;
* each ``c_k`` is per-client state in ``ctx.client_state`` (one safetensors file per client on
  disk, rolled back with the checkpoint on ``--resume``), read at the start of the client's
  local update and written at its end: memory holds one client's control variate at a time,
  however many clients the federation has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fedllm import (
    Algorithm,
    ClientInstruction,
    ClientUpdate,
    Plugin,
    PluginConfig,
    hookimpl,
)
from fedllm.aggregation import RunningMean
from fedllm.errors import FedLLMError
from fedllm.messages import Params

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext

C_KEY = "scaffold_c"
DC_KEY = "scaffold_dc"


class ScaffoldConfig(PluginConfig):
    pass


class _Client:
    """What one client keeps during its local update (in the process that trains it)."""

    def __init__(self, c_k, correction):
        self.c_k = c_k  # float32 on CPU
        self.correction = correction  # c − c_k, on the model's device
        self.steps = 0
        self.lr: float | None = None


class Scaffold(Algorithm):
    uploads_extras = True  # c_k⁺ − c_k travels in update.extras

    def __init__(self, config: ScaffoldConfig):
        self.config = config
        self._clients: dict[tuple[str, int, str], _Client] = {}

    # -- server ---------------------------------------------------------------------------

    @staticmethod
    def server_c(global_params, state) -> dict[str, torch.Tensor]:
        """The cohort's c (zeros before the first aggregation)."""
        import torch

        return {k: state[f"c/{k}"] if f"c/{k}" in state
                else torch.zeros_like(v, dtype=torch.float32) for k, v in global_params.items()}

    @hookimpl
    def fedllm_configure_client(self, ctx: RunContext, cohort: str, round: int,
                                instruction: ClientInstruction, state: dict[str, Any]) -> None:
        instruction.extras[C_KEY] = self.server_c(instruction.params, state)

    def fold(self, global_params, updates, state, num_clients: int):
        """Sample-weighted θ and c ← c + Σ dc_k / N, streaming (used by the hook and tests)."""
        avg = RunningMean()
        dc_sum: dict[str, torch.Tensor] | None = None
        for u in updates:
            avg.add(u.params, float(u.num_samples))
            dc = u.extras.get(DC_KEY)
            if dc is None:
                raise FedLLMError(f"scaffold: client {u.client_id!r} sent no control-variate "
                                  f"change ({DC_KEY!r} missing from its update's extras)")
            if dc_sum is None:
                dc_sum = {k: v.float().clone() for k, v in dc.items()}
            else:
                for k, v in dc.items():
                    dc_sum[k].add_(v.float())
        if dc_sum is None:
            raise FedLLMError("scaffold: no client updates to aggregate")
        c = self.server_c(global_params, state)
        for k in global_params:
            state[f"c/{k}"] = (c[k] + dc_sum[k] / num_clients).float()
        return avg.result()

    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        return self.fold(global_params, updates, state, ctx.num_clients(cohort))

    # -- client ---------------------------------------------------------------------------

    @staticmethod
    def _key(instruction):
        return (instruction.cohort, instruction.round, instruction.client_id)

    @hookimpl
    def fedllm_client_begin(self, ctx: RunContext, instruction: ClientInstruction,
                            params: dict[str, torch.nn.Parameter]) -> None:
        import torch

        c = instruction.extras.get(C_KEY)
        if c is None:
            raise FedLLMError("scaffold: the instruction carries no server control variate "
                              f"({C_KEY!r}); was it configured by the scaffold algorithm?")
        stored = ctx.client_state.load(instruction.cohort, instruction.client_id)
        c_k = {k: (stored[k].float() if stored and k in stored
                   else torch.zeros_like(c[k], dtype=torch.float32)) for k in params}
        corr = {k: (c[k].float() - c_k[k]).to(p.device) for k, p in params.items()}
        self._clients[self._key(instruction)] = _Client(c_k, corr)

    @hookimpl
    def fedllm_after_step(self, ctx: RunContext, instruction: ClientInstruction,
                          params: dict[str, torch.nn.Parameter], lr: float) -> None:
        import torch

        st = self._clients[self._key(instruction)]
        with torch.no_grad():
            for k, p in params.items():
                p.sub_((lr * st.correction[k]).to(p.dtype))
        st.steps += 1
        st.lr = lr

    @hookimpl
    def fedllm_client_end(self, ctx: RunContext, instruction: ClientInstruction,
                          update: ClientUpdate) -> None:
        st = self._clients.pop(self._key(instruction), None)
        if st is None or st.steps == 0:
            raise FedLLMError("scaffold: the local update ran no optimizer steps through "
                              "fedllm_after_step, so the control variate cannot be updated")
        if not st.lr:
            raise FedLLMError(f"scaffold: round {instruction.round}'s learning rate is 0, so "
                              "c_k⁺ = c_k − c + (θ_t − θ_k)/(τ·η) is undefined; use "
                              "train.min_lr > 0")
        c = instruction.extras[C_KEY]
        denom = st.steps * st.lr
        new: dict[str, torch.Tensor] = {}
        dc: dict[str, torch.Tensor] = {}
        for k, c_k in st.c_k.items():
            theta_t = instruction.params[k].float()
            theta_k = update.params[k].float()
            new[k] = c_k - c[k].float() + (theta_t - theta_k) / denom
            dc[k] = new[k] - c_k
        ctx.client_state.save(instruction.cohort, instruction.client_id, instruction.round, new)
        update.extras[DC_KEY] = dc


plugin = Plugin(kind="algorithm", name="scaffold", factory=Scaffold, Config=ScaffoldConfig,
                description="SCAFFOLD: per-step control-variate correction; per-client "
                "variates kept on disk.")
