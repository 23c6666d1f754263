"""Shared pieces of the privacy plugins: L2 clipping of an adapter update, seeded Gaussian
noise, FedLLM-Bench's σ formula, and the RDP accountant (opacus).

The accountant is opacus' :class:`~opacus.accountants.RDPAccountant` (Poisson-subsampled
Gaussian mechanism, Mironov et al. 2019); calibration is opacus' ``get_noise_multiplier``.
No RDP arithmetic is written here.
"""

from __future__ import annotations

import math
import random
import warnings

from fedllm.errors import ConfigError
from fedllm.messages import Params


def l2_norm(tensors: Params) -> float:
    """Global L2 norm over every tensor (the whole adapter as one vector), in float64."""
    if not tensors:
        return 0.0
    sq = sum(float(t.detach().double().pow(2).sum()) for t in tensors.values())
    return math.sqrt(sq)


def clip_(tensors: Params, max_norm: float) -> tuple[float, float]:
    """Scale ``tensors`` in place so their global L2 norm is at most ``max_norm``.

    Returns ``(norm before clipping, scale applied)``; updates already inside the ball are
    left untouched (scale 1).
    """
    if max_norm <= 0:
        raise ConfigError(f"clip_norm must be > 0, got {max_norm!r}")
    norm = l2_norm(tensors)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    if scale < 1.0:
        for t in tensors.values():
            t.mul_(scale)
    return norm, scale


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, round, client, mechanism name)."""
    return random.Random(":".join(map(str, parts))).getrandbits(63)


def gaussian_like(tensors: Params, std: float, seed: int) -> Params:
    """N(0, std²) per coordinate, shaped like ``tensors``; drawn on CPU in sorted-name order
    from a generator seeded with ``seed``, so the draw is the same on any device and backend."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        z = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        out[name] = (z * std).to(t.device, t.dtype)
    return out


# --------------------------------------------------------------------------- validation


def check_epsilon(epsilon: float, field: str = "epsilon") -> None:
    if not (isinstance(epsilon, (int, float)) and epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"{field} must be a finite number > 0, got {epsilon!r}")


def check_delta(delta: float, field: str = "delta") -> None:
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ConfigError(f"{field} must be in the open interval (0, 1), got {delta!r}")


def check_rate(q: float) -> None:
    if not 0 < q <= 1:
        raise ConfigError(f"sample rate q must be in (0, 1], got {q!r}")


# --------------------------------------------------------------------------- FedLLM-Bench


def paper_sensitivity(*, lr: float, clip_norm: float, dataset_size: int,
                      num_clients: int) -> float:
    """FedLLM-Bench App. D (after Wei et al. 2020): Δ_l = 2ηC / (|D| / N)."""
    if clip_norm <= 0:
        raise ConfigError(f"clip_norm must be > 0, got {clip_norm!r}")
    if lr <= 0:
        raise ConfigError(f"the learning rate must be > 0, got {lr!r}")
    if not dataset_size or dataset_size <= 0:
        raise ConfigError(f"dataset_size |D| must be a positive number of training samples, "
                          f"got {dataset_size!r}")
    if not num_clients or num_clients <= 0:
        raise ConfigError(f"num_clients N must be > 0, got {num_clients!r}")
    return 2.0 * lr * clip_norm / (dataset_size / num_clients)


def paper_sigma(*, epsilon: float, delta: float, sensitivity: float, sample_rate: float,
                rounds: int) -> float:
    """FedLLM-Bench App. D: σ = Δ_l · √(2 q R ln(1/δ)) / ε."""
    check_epsilon(epsilon)
    check_delta(delta)
    check_rate(sample_rate)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds!r}")
    return sensitivity * math.sqrt(2.0 * sample_rate * rounds * math.log(1.0 / delta)) / epsilon


def paper_epsilon(*, sigma: float, delta: float, sensitivity: float, sample_rate: float,
                  rounds: int) -> float | None:
    """The same formula solved for ε after ``rounds`` rounds (None when σ = 0: no guarantee)."""
    if sigma <= 0:
        return None
    return sensitivity * math.sqrt(2.0 * sample_rate * rounds * math.log(1.0 / delta)) / sigma


# --------------------------------------------------------------------------- RDP accounting


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int,
                delta: float) -> float:
    """ε after ``steps`` compositions of the subsampled Gaussian mechanism (opacus RDP)."""
    check_delta(delta)
    check_rate(sample_rate)
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def calibrate_noise_multiplier(*, target_epsilon: float, delta: float, sample_rate: float,
                               steps: int, rel_tolerance: float = 0.01) -> float:
    """The noise multiplier z whose ε after ``steps`` is at most ``target_epsilon`` and within
    ``rel_tolerance`` (relative) below it (opacus' binary search)."""
    from opacus.accountants.utils import get_noise_multiplier

    check_epsilon(target_epsilon, "target epsilon")
    check_delta(delta)
    check_rate(sample_rate)
    try:
        with warnings.catch_warnings():
            # The search starts at z=20, where the best RDP order is the largest one tried.
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            return float(get_noise_multiplier(
                target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                steps=steps, accountant="rdp", epsilon_tolerance=rel_tolerance * target_epsilon))
    except ValueError as exc:  # opacus: "The privacy budget is too low."
        raise ConfigError(f"cannot reach ε={target_epsilon} at δ={delta} with sample rate "
                          f"{sample_rate:.4g} over {steps} rounds: {exc}") from None
