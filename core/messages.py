"""What crosses the server/client boundary: plain, serialisable messages.

A backend may move these across a process or a network unchanged: they hold only tensors,
numbers, strings and ``dict``/``list`` of those (no model, no open file, no plugin object).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Params = dict[str, "torch.Tensor"]


@dataclass
class ClientInstruction:
    """Sent down to a client: train on your data starting from ``params``."""

    cohort: str
    round: int
    client_id: str
    params: Params
    lr: float
    seed: int
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClientUpdate:
    """Sent back up: the client's new adapter ``params`` (θ_k), its sample count ``n_k``,
    training metrics and algorithm extras (e.g. a control-variate change).

    Under secure aggregation the server never sees one client's update: the backend yields a
    single update whose ``params`` are the cohort's weighted mean and whose ``members`` list
    each client it stands for (``client_id``, ``num_samples``, ``metrics``)."""

    client_id: str
    num_samples: int
    params: Params
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] | None = None

    def clients(self) -> list[dict[str, Any]]:
        """The clients this update stands for: its members, or itself."""
        if self.members is not None:
            return self.members
        return [{"client_id": self.client_id, "num_samples": self.num_samples,
                 "metrics": self.metrics}]

    def delta(self, global_params: Params) -> Params:
        """Δ_k = θ_k − θ_t, in float32."""
        return {k: self.params[k].float() - global_params[k].float() for k in global_params}


@dataclass
class RoundReport:
    """What a backend returns for one cohort's round. ``updates`` yields each client's update
    as it finishes; once it is exhausted, ``dropped`` names the sampled clients that never
    answered (the round completes without them) and ``stats`` holds numbers to add to the
    round's record (e.g. bytes on the wire)."""

    updates: Iterator[ClientUpdate]
    dropped: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


def nbytes(obj: Any) -> int:
    """Bytes of tensor payload in a message part (params or extras)."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0
