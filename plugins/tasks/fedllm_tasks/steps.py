"""Dynamic local steps (FedLLM-Bench, Fed-ChatbotPA): size each client's local work by its data.

A client is expected to be sampled ``R·K/N`` times in a run, so giving it
``ceil(n_k · epochs / (R·K/N) / (batch · accum))`` steps per round makes it see its data about
``epochs`` times over the whole run, however small or large it is (SPEC §4).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from fedllm import PluginConfig, Task, hookimpl

if TYPE_CHECKING:
    from fedllm.context import RunContext


def dynamic_local_steps(num_samples: int, *, rounds: int, clients_per_round: int,
                        num_clients: int, batch_size: int, grad_accum: int,
                        epochs: float = 3.0) -> int:
    """``ceil(n_k · epochs / (R·K/N) / (batch · accum))``, at least 1.

    K is capped at N: when a round samples every client, each is sampled ``R`` times.
    """
    expected_visits = rounds * min(clients_per_round, num_clients) / num_clients
    steps = math.ceil(num_samples * epochs / expected_visits / (batch_size * grad_accum))
    return max(1, steps)


class StepsConfig(PluginConfig):
    """Task config fields shared by every task of this package."""

    local_steps: Literal["fixed", "dynamic"] = Field(
        "fixed", description="'fixed': train.local_steps for every client; 'dynamic': "
        "ceil(n_k·epochs / (R·K/N) / (batch·accum)) per client (FedLLM-Bench Fed-ChatbotPA).")
    dynamic_epochs: float = Field(
        3.0, gt=0, description="Passes over its data each client makes across the run under "
        "local_steps: dynamic.")


class DynamicSteps(Task):
    """Base of this package's tasks: ``fedllm_local_steps`` from a StepsConfig, and the check
    of ``max_length`` against the model's context."""

    config: StepsConfig

    @property
    def plans_rounds(self) -> bool:  # type: ignore[override]
        """Dynamic steps divide a client's data over the run's planned rounds."""
        return self.config.local_steps == "dynamic"

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        limit = ctx.model_info.max_position_embeddings if ctx.model_info else None
        max_length = getattr(self.config, "max_length", None)
        if limit and max_length and max_length > limit:
            return [f"task.max_length: {max_length} exceeds the model's context of {limit} "
                    f"tokens (max_position_embeddings); allowed: 8..{limit}"]
        return None

    @hookimpl
    def fedllm_local_steps(self, ctx: RunContext, client_id: str, num_samples: int) -> int | None:
        if self.config.local_steps != "dynamic":
            return None
        cfg = ctx.config
        return dynamic_local_steps(
            num_samples, rounds=cfg.planned_rounds, clients_per_round=cfg.clients_per_round,
            num_clients=len(ctx.dataset.clients), batch_size=cfg.train.batch_size,
            grad_accum=cfg.train.grad_accum, epochs=self.config.dynamic_epochs)
