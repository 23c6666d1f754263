"""dp-fedavg: the aggregate it makes FedAvg compute, its accounting, budget and sampling checks."""

from __future__ import annotations

import pytest
import torch

from fedllm.errors import FedLLMError
from fedllm.messages import ClientUpdate
from fedllm.testing import call, component
from fedllm_algorithms.fedavg import FedAvg, FedAvgConfig
from fedllm_privacy.dp_fedavg import NAME, DPFedAvg, DPFedAvgConfig
from fedllm_privacy.mechanisms import derive_seed, gaussian_like, rdp_epsilon

GLOB = {"w": torch.tensor([1.0, -2.0, 0.5]), "v": torch.tensor([[0.0, 3.0]])}
# (n_k, Δ_k): norms 5.0 (clipped to C=2), 0.5 and 1.0 (kept); very unequal sample counts.
DELTAS = [
    (100, {"w": torch.tensor([3.0, 0.0, 0.0]), "v": torch.tensor([[4.0, 0.0]])}),
    (1, {"w": torch.tensor([0.0, 0.3, 0.0]), "v": torch.tensor([[0.0, 0.4]])}),
    (7, {"w": torch.tensor([0.0, 0.0, 0.6]), "v": torch.tensor([[-0.8, 0.0]])}),
]


def updates():
    for i, (n, d) in enumerate(DELTAS):
        yield ClientUpdate(
            client_id=f"c{i}",
            num_samples=n,
            params={k: GLOB[k] + d[k] for k in GLOB},
            metrics={"train_loss": 1.0},
        )


def aggregate(dp: DPFedAvg, ctx, round: int = 0):
    stream = call(
        dp,
        "fedllm_privatize_updates",
        ctx=ctx,
        cohort="global",
        round=round,
        global_params=GLOB,
        updates=updates(),
        clients=["c0", "c1", "c2"],
    )
    return call(FedAvg(FedAvgConfig()), "fedllm_aggregate", updates=stream)


def test_fedavg_computes_the_fixed_denominator_dp_estimate(fake_ctx):
    """θ_t + (Σ clip_C(Δ_k) + N(0, z²C²)) / (qN), whatever the sample counts."""
    ctx = fake_ctx(clients=6, k=3, rounds=4, seed=5)
    c, z = 2.0, 0.8
    dp = DPFedAvg(DPFedAvgConfig(clip_norm=c, noise_multiplier=z, epsilon=None))
    new = aggregate(dp, ctx, round=1)
    clipped = [
        {k: v * (2.0 / 5.0) for k, v in DELTAS[0][1].items()},
        DELTAS[1][1],
        DELTAS[2][1],
    ]
    xi = gaussian_like(GLOB, z * c, derive_seed(5, NAME, "global", 1))
    for k in GLOB:
        want = GLOB[k] + (sum(d[k] for d in clipped) + xi[k]) / 3  # qN = 3/6 · 6
        torch.testing.assert_close(new[k], want)
    # the noise really is there and reproduces: same round → same result, next round differs
    torch.testing.assert_close(aggregate(dp, ctx, round=1)["w"], new["w"])
    assert not torch.equal(aggregate(dp, ctx, round=2)["w"], new["w"])
    rec = {"cohorts": {"global": {}}}
    call(dp, "fedllm_round_end", ctx=ctx, round=2, record=rec)
    out = rec["privacy"][NAME]
    assert out["clipped_fraction"] == pytest.approx(1 / 3)
    assert out["sample_rate"] == 0.5 and out["noise_multiplier"] == z
    assert out["epsilon"] == pytest.approx(
        rdp_epsilon(noise_multiplier=z, sample_rate=0.5, steps=3, delta=1e-5)
    )


def test_zero_noise_is_the_unweighted_mean_of_clipped_updates(fake_ctx):
    ctx = fake_ctx(clients=3, k=3)
    dp = DPFedAvg(DPFedAvgConfig(clip_norm=100.0, noise_multiplier=0.0, epsilon=None))
    new = aggregate(dp, ctx)
    for k in GLOB:
        torch.testing.assert_close(new[k], GLOB[k] + sum(d[k] for _, d in DELTAS) / 3)


def test_calibrated_z_meets_target_over_the_run(fake_ctx):
    ctx = fake_ctx(clients=10, k=3, rounds=20)
    dp = DPFedAvg(DPFedAvgConfig(epsilon=2.0, delta=1e-5))
    k, q, z = dp.cohort_params(ctx, "global")
    assert (k, q) == (3, 0.3)
    eps = rdp_epsilon(noise_multiplier=z, sample_rate=q, steps=20, delta=1e-5)
    assert 0.99 * 2.0 <= eps <= 2.0


def test_budget_stops_before_the_round_that_would_exceed_it(fake_ctx):
    ctx = fake_ctx(clients=6, k=3, rounds=50)
    dp = DPFedAvg(DPFedAvgConfig(noise_multiplier=2.0, epsilon=3.0, delta=1e-5))
    last_ok = max(
        r
        for r in range(50)
        if rdp_epsilon(noise_multiplier=2.0, sample_rate=0.5, steps=r + 1, delta=1e-5)
        <= 3.0
    )
    assert last_ok == 3  # ε after 4 rounds 2.81, after 5 rounds 3.12
    aggregate(dp, ctx, round=last_ok)  # allowed
    with pytest.raises(
        FedLLMError,
        match=rf"round {last_ok + 2} would spend ε=.*over the budget "
        rf"epsilon=3; stopped after {last_ok + 1} rounds",
    ):
        aggregate(dp, ctx, round=last_ok + 1)


def test_refuses_a_sampler_that_breaks_the_accounting(fake_ctx):
    ctx = fake_ctx(clients=6, k=3)
    dp = DPFedAvg(DPFedAvgConfig(noise_multiplier=1.0))
    with pytest.raises(FedLLMError, match="fixed-size sampling of K=3 .* chose 6"):
        call(
            dp,
            "fedllm_privatize_updates",
            ctx=ctx,
            cohort="global",
            round=0,
            global_params=GLOB,
            updates=updates(),
            clients=[f"c{i}" for i in range(6)],
        )


@pytest.mark.parametrize("algo", ["fedavgm", "fedadam", "fedyogi", "fedprox"])
def test_server_optimizers_step_on_the_private_mean(fake_ctx, algo):
    """With dp-fedavg in front, a server optimizer sees exactly the DP-FedAvg mean update: the
    same as feeding it one update θ_t + (Σ clip Δ + ξ)/(qN) directly (post-processing)."""
    ctx = fake_ctx(clients=6, k=3, seed=2)
    dp = DPFedAvg(DPFedAvgConfig(clip_norm=2.0, noise_multiplier=0.5, epsilon=None))
    stream = call(
        dp,
        "fedllm_privatize_updates",
        ctx=ctx,
        cohort="global",
        round=0,
        global_params=GLOB,
        updates=updates(),
        clients=["c0", "c1", "c2"],
    )
    alg = component("algorithm", algo)
    kw = dict(ctx=ctx, cohort="global", global_params=GLOB, state={})
    got = call(alg, "fedllm_aggregate", **kw, updates=stream)
    mean = call(
        FedAvg(FedAvgConfig()),
        "fedllm_aggregate",
        updates=call(
            dp,
            "fedllm_privatize_updates",
            ctx=ctx,
            cohort="global",
            round=0,
            global_params=GLOB,
            updates=updates(),
            clients=["c0", "c1", "c2"],
        ),
    )
    one = iter([ClientUpdate(client_id="m", num_samples=1, params=mean)])
    want = call(
        component("algorithm", algo),
        "fedllm_aggregate",
        **{**kw, "state": {}},
        updates=one,
    )
    for k in GLOB:
        torch.testing.assert_close(got[k], want[k])
