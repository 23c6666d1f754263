"""``sample-dp``: sample-level DP-SGD for each client's local update (Abadi et al. 2016), with
opacus: per-sample gradients of the adapter (``GradSampleModule``), each clipped to
``max_grad_norm``, Gaussian noise of std ``noise_multiplier · max_grad_norm`` on their sum
(``DPOptimizer``).

What it protects: each *sample* of a client's data, whatever the server sees (the adapter,
and anything computed from it, such as SCAFFOLD's control variates: post-processing). Each
client's ε is accounted with opacus' RDP accountant over every step it has taken in the run
(sample rate batch / n_k per step; fixed-size batches are accounted with that rate, the usual
practice), kept in the client's state on disk so that it survives rounds and ``--resume``.

Limits (checked before the run): one micro-batch per step (``train.grad_accum = 1``), and no
algorithm that adds loss terms (their gradient is not per-sample, so it would not be clipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import ClientInstruction, ClientUpdate, Plugin, PluginConfig, Privacy, hookimpl

from .mechanisms import rdp_epsilon

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext

NAME = "sample-dp"
STEPS = "sample-dp/steps"
EPS_KEY = f"{NAME}/epsilon"


class SampleDPConfig(PluginConfig):
    noise_multiplier: float = Field(
        1.0, ge=0, description="z: the noise on each step's sum of clipped per-sample "
        "gradients has std z · max_grad_norm.")
    max_grad_norm: float = Field(
        1.0, gt=0, description="C: each sample's gradient (over the adapter) is clipped to this "
        "L2 norm.")
    delta: float = Field(1e-5, gt=0, lt=1, description="δ of each client's reported (ε, δ).")


class SampleDP(Privacy):
    covers_extras = True  # extras computed from DP-trained tensors are post-processing

    def __init__(self, config: SampleDPConfig):
        self.config = config
        self._eps: dict[str, float] = {}

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        out = []
        if ctx.config.train.grad_accum != 1:
            out.append(f"privacy {NAME}: train.grad_accum={ctx.config.train.grad_accum}, but "
                       "DP-SGD here takes one micro-batch per step; allowed: 1 (raise "
                       "train.batch_size instead)")
        algo = ctx.plugins.one("algorithm")
        if algo.implements("fedllm_loss_terms"):
            out.append(f"privacy {NAME}: algorithm {algo.name!r} adds loss terms whose "
                       "gradient is not per-sample, so DP-SGD could not clip it; use an "
                       "algorithm without client loss terms")
        return out

    @hookimpl
    def fedllm_wrap_training(self, ctx: RunContext, instruction: ClientInstruction, model: Any,
                             optimizer: torch.optim.Optimizer):
        return self._dp_sgd(ctx, instruction, model, optimizer)

    @contextmanager
    def _dp_sgd(self, ctx, instruction, model, optimizer) -> Iterator[tuple[Any, Any]]:
        import torch
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        gsm = GradSampleModule(model, strict=False)
        dp = DPOptimizer(optimizer, noise_multiplier=self.config.noise_multiplier,
                         max_grad_norm=self.config.max_grad_norm,
                         expected_batch_size=ctx.config.train.batch_size,
                         # seeded like the rest of the client's update: resumes are exact
                         generator=torch.Generator(device=ctx.device).manual_seed(
                             instruction.seed))
        try:
            yield gsm, dp
        finally:
            gsm._close()  # the base model leaves with no opacus hooks or grad_sample

    @hookimpl
    def fedllm_privatize(self, ctx: RunContext, instruction: ClientInstruction,
                         update: ClientUpdate) -> None:
        """Account this update's steps into the client's total and report its ε."""
        import torch

        store = ctx.state
        prev = store.load(instruction.cohort, f"{instruction.client_id}.{NAME}")
        steps = int(prev[STEPS].item()) if prev else 0
        steps += int(update.metrics.get("local_steps", 0))
        store.save(instruction.cohort, f"{instruction.client_id}.{NAME}", instruction.round,
                   {STEPS: torch.tensor([steps])})
        q = min(1.0, ctx.config.train.batch_size / max(1, update.num_samples))
        eps = rdp_epsilon(noise_multiplier=self.config.noise_multiplier, sample_rate=q,
                          steps=steps, delta=self.config.delta)
        update.metrics[EPS_KEY] = eps

    @hookimpl
    def fedllm_round_end(self, ctx: RunContext, round: int, record: dict[str, Any]) -> None:
        eps = [c[EPS_KEY] for co in record.get("cohorts", {}).values()
               for c in co.get("clients", {}).values() if EPS_KEY in c]
        record.setdefault("privacy", {})[NAME] = {
            "epsilon": max(eps) if eps else None, "delta": self.config.delta,
            "noise_multiplier": self.config.noise_multiplier,
            "max_grad_norm": self.config.max_grad_norm,
            "accounting": "opacus RDP per client (the largest ε of this round's clients)"}


plugin = Plugin(kind="privacy", name=NAME, factory=SampleDP, Config=SampleDPConfig,
                description="Sample-level DP-SGD for each client (opacus): per-sample clipping "
                "+ noise; each client's ε from an RDP accountant.")
