"""Streaming arithmetic on adapter tensors for aggregation rules.

Updates arrive one at a time; these accumulators fold each in and drop it, so aggregating
1,000 clients costs the memory of one running sum, not 1,000 adapters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .messages import ClientUpdate, Params

if TYPE_CHECKING:
    import torch


class RunningMean:
    """Σ w_i x_i / Σ w_i over tensors dicts, accumulated in float32 (or float64)."""

    def __init__(self, dtype: torch.dtype | None = None):
        import torch

        self.dtype = dtype or torch.float32
        self.sum: Params | None = None
        self.weight = 0.0
        self.count = 0

    def add(self, tensors: Params, weight: float = 1.0) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if self.sum is None:
            self.sum = {k: v.to(self.dtype) * weight for k, v in tensors.items()}
        else:
            if tensors.keys() != self.sum.keys():
                raise ValueError("updates carry different tensor names")
            for k, v in tensors.items():
                self.sum[k].add_(v.to(self.dtype), alpha=weight)
        self.weight += weight
        self.count += 1

    def result(self) -> Params:
        if self.sum is None or self.weight == 0:
            raise ValueError("no updates (or only zero weights) to average")
        return {k: (v / self.weight).float() for k, v in self.sum.items()}


def weighted_params(updates: Iterable[ClientUpdate]) -> Params:
    """FedAvg's Σ p_k θ_k with p_k = n_k / Σ n_j, streamed."""
    acc = RunningMean()
    for u in updates:
        acc.add(u.params, float(u.num_samples))
    return acc.result()


def mean_delta(updates: Iterable[ClientUpdate], global_params: Params,
               weighted: bool) -> tuple[Params, int]:
    """Σ p_k Δ_k (``weighted``) or mean_k Δ_k, streamed; also returns the update count."""
    acc = RunningMean()
    for u in updates:
        acc.add(u.delta(global_params), float(u.num_samples) if weighted else 1.0)
    return acc.result(), acc.count
