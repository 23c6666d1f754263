"""``dp-fedavg``: central user-level DP (McMahan et al. 2018, "Learning Differentially Private
Recurrent Language Models"), with an RDP accountant.

What the mechanism computes, per cohort and round t with K = qN clients sampled (fixed size):

    θ_{t+1} = θ_t + ( Σ_k clip_C(Δ_k) + N(0, z² C² I) ) / (qN)

i.e. the fixed-denominator estimator: every client weighs the same (1/(qN)), whatever its
sample count, because a sample-weighted mean would let one user with many samples move the
model by more than C/(qN), breaking the sensitivity the noise is calibrated to.

How it composes with the algorithm: the server wraps the stream of client updates before the
algorithm folds it (``fedllm_privatize_updates``). Each update is replaced by
θ_t + clip_C(Δ_k) + ξ/K with one noise draw ξ ~ N(0, z²C² I) per round shared by the K
updates, and its ``num_samples`` is set to 1. Any algorithm whose server rule starts from the
(sample-weighted or plain) mean of the client updates, FedAvg, FedProx, FedAvgM and the FedOpt
family, then sees exactly mean = θ_t + (Σ clip_C(Δ_k) + ξ)/K, the DP-FedAvg estimate above,
and applies its own server step to it (post-processing: no extra privacy cost). Per-client
state an algorithm keeps from the individual updates or extras (e.g. SCAFFOLD's control
variates) is not covered by the guarantee. Client sample counts in ``metrics.jsonl`` are the
real ones (recorded before this wrapper).

Accounting: one subsampled Gaussian mechanism (noise multiplier z, rate q = K/N) per round,
composed with opacus' RDP accountant. Opacus analyses Poisson sampling; K-of-N fixed-size
sampling is accounted with the same q, the usual practice (McMahan et al. 2018 §2), which is
not a formal bound for sampling without replacement. Given a target ε, z is calibrated so that
ε after ``rounds`` rounds is at most the target; ``epsilon`` is also a budget: a round that would
exceed it is refused before any client trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from fedllm import ClientUpdate, Plugin, PluginConfig, Privacy, hookimpl
from fedllm.errors import FedLLMError
from fedllm.messages import Params

from .mechanisms import (
    calibrate_noise_multiplier,
    clip_,
    derive_seed,
    gaussian_like,
    rdp_epsilon,
)

if TYPE_CHECKING:
    from fedllm.context import RunContext

NAME = "dp-fedavg"


class DPFedAvgConfig(PluginConfig):
    clip_norm: float = Field(
        1.0, gt=0, description="C: each client update θ_k − θ_t is clipped to this L2 norm "
        "on the server before aggregation.")
    noise_multiplier: float | None = Field(
        None, ge=0, description="z: the noise on the sum of clipped updates has std z·C; "
        "None: calibrated so that ε after `rounds` rounds meets `epsilon`.")
    epsilon: float | None = Field(
        1.0, gt=0, description="Target ε of the whole run (calibrates z when noise_multiplier "
        "is None) and privacy budget: the run stops before a round would exceed it. None: no "
        "budget (only with a fixed noise_multiplier).")
    delta: float = Field(1e-5, gt=0, lt=1, description="δ of the reported (ε, δ).")

    @model_validator(mode="after")
    def _z_or_eps(self) -> "DPFedAvgConfig":
        if self.noise_multiplier is None and self.epsilon is None:
            raise ValueError("set noise_multiplier (z) or epsilon (the target to calibrate z "
                             "for the run's rounds); both are None")
        return self


class DPFedAvg(Privacy):
    """Server-side clip + noise on the sum + fixed denominator; RDP accounting per round."""

    def __init__(self, config: DPFedAvgConfig):
        self.config = config
        self._cohorts: dict[str, tuple[int, float, float]] = {}  # cohort -> (K, q, z)
        self._round_stats: dict[str, Any] = {}

    def cohort_params(self, ctx, cohort: str) -> tuple[int, float, float]:
        """(K, q, z) for a cohort: K = min(clients_per_round, cohort size), q = K/N."""
        if cohort not in self._cohorts:
            n = ctx.num_clients(cohort)
            k = min(ctx.config.clients_per_round, n)
            q = k / n
            z = self.config.noise_multiplier
            if z is None:
                assert self.config.epsilon is not None  # the config validator ensures it
                z = calibrate_noise_multiplier(target_epsilon=self.config.epsilon,
                                               delta=self.config.delta, sample_rate=q,
                                               steps=ctx.config.rounds)
            self._cohorts[cohort] = (k, q, float(z))
        return self._cohorts[cohort]

    def epsilon_after(self, ctx, cohort: str, rounds: int) -> float:
        _, q, z = self.cohort_params(ctx, cohort)
        return rdp_epsilon(noise_multiplier=z, sample_rate=q, steps=rounds,
                           delta=self.config.delta)

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        """Calibrate z for every cohort now, so an impossible budget stops the run up front."""
        try:
            for cohort in ctx.cohorts:
                self.cohort_params(ctx, cohort)
        except FedLLMError as exc:
            return [str(exc)]
        return None

    @hookimpl
    def fedllm_privatize_updates(self, ctx: RunContext, cohort: str, round: int,
                                 global_params: Params, updates: Iterator[ClientUpdate],
                                 clients: list[str]) -> Iterator[ClientUpdate] | None:
        k, q, z = self.cohort_params(ctx, cohort)
        poisson = ctx.plugins.one("sampler").cap("sampling") == "poisson"
        if not poisson and len(clients) != k:
            raise FedLLMError(
                f"privacy {NAME}: accounts for fixed-size sampling of K={k} clients per round "
                f"(min(clients_per_round, cohort size)) but the sampler chose {len(clients)} "
                f"in round {round + 1}; use a sampler that draws clients_per_round clients "
                "(e.g. 'uniform'), or set clients_per_round to the cohort size")
        budget = self.config.epsilon
        eps_next = self.epsilon_after(ctx, cohort, round + 1)
        if budget is not None and eps_next > budget:
            spent = self.epsilon_after(ctx, cohort, round)
            raise FedLLMError(
                f"privacy {NAME}: round {round + 1} would spend ε={eps_next:.4g} (δ="
                f"{self.config.delta:g}, z={z:.4g}, q={q:.4g}), over the budget epsilon="
                f"{budget:g}; stopped after {round} rounds with ε={spent:.4g} spent. Raise "
                "privacy epsilon, lower rounds, or raise noise_multiplier")
        stats = self._round_stats.setdefault(cohort, {"norms": []})
        stats["norms"] = []
        seed = derive_seed(ctx.config.seed, NAME, cohort, round)
        if poisson:
            return self._poisson(updates, global_params, k, z, seed, stats)
        return self._stream(updates, global_params, k, z, seed, stats)

    def _poisson(self, updates: Iterator[ClientUpdate], glob, k: int, z: float, seed: int,
                 stats: dict[str, Any]) -> Iterator[ClientUpdate]:
        """Under Poisson sampling the number of clients varies (0 included), so the estimate
        θ_t + (Σ clip_C(Δ_k) + ξ)/(qN) is folded here, as a running sum, and handed on as one
        update: any weighted-mean algorithm then steps on exactly that estimate."""
        c = self.config.clip_norm
        total = None
        for u in updates:
            delta = u.delta(glob)
            norm, _ = clip_(delta, c)
            stats["norms"].append(norm)
            total = delta if total is None else {n: total[n] + delta[n] for n in total}
        zero = {n: glob[n].float() * 0 for n in glob}
        noise = gaussian_like(zero, z * c, seed)
        total = total or zero
        params = {n: glob[n].float() + (total[n] + noise[n]) / k for n in glob}
        yield ClientUpdate(client_id="dp-fedavg/poisson", num_samples=1, params=params)

    def _stream(self, updates: Iterator[ClientUpdate], glob, k: int, z: float, seed: int,
                stats: dict[str, Any]) -> Iterator[ClientUpdate]:
        c = self.config.clip_norm
        noise = None
        for u in updates:
            delta = u.delta(glob)
            norm, _ = clip_(delta, c)
            stats["norms"].append(norm)
            if noise is None:
                noise = gaussian_like(delta, z * c, seed)
            params = {n: glob[n].float() + delta[n] + noise[n] / k for n in delta}
            yield ClientUpdate(client_id=u.client_id, num_samples=1, params=params,
                               metrics=u.metrics, extras=u.extras)

    @hookimpl
    def fedllm_round_end(self, ctx: RunContext, round: int, record: dict[str, Any]) -> None:
        per: dict[str, dict[str, Any]] = {}
        for cohort in record.get("cohorts", {}):
            k, q, z = self.cohort_params(ctx, cohort)
            norms = self._round_stats.get(cohort, {}).get("norms", [])
            per[cohort] = {
                "epsilon": self.epsilon_after(ctx, cohort, round + 1), "noise_multiplier": z,
                "sample_rate": q,
                "clipped_fraction": (sum(n > self.config.clip_norm for n in norms) / len(norms)
                                     if norms else None),
                "mean_update_norm": sum(norms) / len(norms) if norms else None,
            }
        worst = max(per.values(), key=lambda v: v["epsilon"]) if per else {}
        out: dict[str, Any] = {
            "epsilon": worst.get("epsilon"), "delta": self.config.delta,
            "budget": self.config.epsilon, "clip_norm": self.config.clip_norm,
            "noise_multiplier": worst.get("noise_multiplier"),
            "sample_rate": worst.get("sample_rate"),
            "clipped_fraction": worst.get("clipped_fraction"),
            "mean_update_norm": worst.get("mean_update_norm"),
            "accounting": "opacus RDP (subsampled Gaussian)",
        }
        if len(per) > 1:
            out["cohorts"] = per
        record.setdefault("privacy", {})[NAME] = out
        if round == ctx.config.rounds - 1:
            ctx.console.print(f"{NAME}: ({out['epsilon']:.4g}, {self.config.delta:g})-DP spent "
                              f"after {round + 1} rounds (z={out['noise_multiplier']:.4g}, "
                              f"q={out['sample_rate']:.4g}, C={self.config.clip_norm:g})",
                              highlight=False)


plugin = Plugin(kind="privacy", name=NAME, factory=DPFedAvg, Config=DPFedAvgConfig,
                description="Central DP-FedAvg: clip each update, Gaussian noise on the sum, "
                "fixed denominator; RDP accountant reports ε per round and enforces a budget.")
