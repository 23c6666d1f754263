"""Server rules on small tensors against SPEC §3's formulas, over several rounds.

Every rule is driven through its ``fedllm_aggregate`` hook with fake client updates (unequal
sample counts) and a state dict carried across rounds, as the engine does. The expected values
come from the SPEC formulas evaluated element by element on Python floats (``oracle_*``), plus a
few literals worked out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from fedllm.messages import ClientUpdate
from fedllm.testing import call
from fedllm_algorithms.fedadagrad import FedAdagrad, FedAdagradConfig
from fedllm_algorithms.fedadam import FedAdam, FedAdamConfig
from fedllm_algorithms.fedavg import FedAvg, FedAvgConfig
from fedllm_algorithms.fedavgm import FedAvgM, FedAvgMConfig
from fedllm_algorithms.fedprox import FedProx, FedProxConfig
from fedllm_algorithms.fedyogi import FedYogi, FedYogiConfig
from fedllm_algorithms.scaffold import DC_KEY, Scaffold, ScaffoldConfig

THETA0 = [1.0, -2.0, 0.5]
# Per round: [(n_k, Δ_k)], unequal sample counts; Δ_k is relative to that round's θ_t.
ROUNDS = [
    [(1, [1.0, 1.0, -0.2]), (3, [-2.0, 0.0, 0.4])],
    [(2, [0.5, -1.0, 0.1]), (5, [1.5, 1.0, -0.3]), (1, [0.0, 0.2, 0.0])],
    [(4, [-0.3, 0.6, 0.05]), (1, [0.9, -0.4, -0.6])],
]


def updates_for(theta: list[float], round_updates, dc=None):
    out = []
    for i, (n, d) in enumerate(round_updates):
        params = {"w": torch.tensor([t + x for t, x in zip(theta, d)], dtype=torch.float32)}
        extras = {DC_KEY: {"w": torch.tensor(dc[i], dtype=torch.float32)}} if dc else {}
        out.append(ClientUpdate(client_id=f"c{i}", num_samples=n, params=params, extras=extras))
    return iter(out)  # an iterator, consumed once, as the engine hands it


def run_rule(algo, rounds=ROUNDS, ctx=None):
    """Drive ``algo``'s ``fedllm_aggregate`` the way the engine calls it (through pluggy)."""
    theta = list(THETA0)
    state: dict = {}
    history = []
    for r, ups in enumerate(rounds):
        glob = {"w": torch.tensor(theta)}
        before = glob["w"].clone()
        new = call(algo, "fedllm_aggregate", ctx=ctx, cohort="global", round=r,
                   global_params=glob, updates=updates_for(theta, ups), state=state)
        assert torch.equal(glob["w"], before), "global_params must not be mutated"
        theta = new["w"].tolist()
        history.append((theta, {k: v.clone() for k, v in state.items()}))
    return history


def weighted(ups):
    tot = sum(n for n, _ in ups)
    return [sum(n * d[i] for n, d in ups) / tot for i in range(len(THETA0))]


def unweighted(ups):
    return [sum(d[i] for _, d in ups) / len(ups) for i in range(len(THETA0))]


def sign(x):
    return (x > 0) - (x < 0)


def close(a, b, tol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert math.isclose(x, y, rel_tol=tol, abs_tol=1e-6), (a, b)


# ------------------------------------------------------------------------------- oracles


def oracle_fedavgm(beta1=0.5):
    theta, m, out = list(THETA0), None, []
    for ups in ROUNDS:
        d = weighted(ups)
        m = d if m is None else [beta1 * mi + (1 - beta1) * di for mi, di in zip(m, d)]
        theta = [t + mi for t, mi in zip(theta, m)]
        out.append(theta)
    return out


def oracle_adaptive(rule, eta=1e-3, tau=1e-3, beta1=0.5, beta2=0.99):
    theta, m, v, out = list(THETA0), None, [tau ** 2] * 3, []
    for ups in ROUNDS:
        d = unweighted(ups)
        if rule == "adagrad":
            m = d
            v = [vi + di * di for vi, di in zip(v, d)]
        else:
            m = d if m is None else [beta1 * mi + (1 - beta1) * di for mi, di in zip(m, d)]
            if rule == "yogi":
                v = [vi - (1 - beta2) * mi * mi * sign(vi - mi * mi) for vi, mi in zip(v, m)]
            else:
                v = [beta2 * vi + (1 - beta2) * mi * mi for vi, mi in zip(v, m)]
        theta = [t + eta * mi / (math.sqrt(vi) + tau) for t, mi, vi in zip(theta, m, v)]
        out.append((theta, m, v))
    return out


# ------------------------------------------------------------------------------- tests


def test_fedavg_is_sample_weighted_average():
    hist = run_rule(FedAvg(FedAvgConfig()))
    theta = list(THETA0)
    for (got, _), ups in zip(hist, ROUNDS):
        theta = [t + w for t, w in zip(theta, weighted(ups))]
        close(got, theta)
    # round 0 by hand: n = 1, 3 -> θ = θ0 + (1·Δ_A + 3·Δ_B)/4
    close(hist[0][0], [1.0 - 1.25, -2.0 + 0.25, 0.5 + 0.25])


def test_fedavgm_reference_ema():
    hist = run_rule(FedAvgM(FedAvgMConfig()))
    for (got, _state), want in zip(hist, oracle_fedavgm()):
        close(got, want)
    # by hand: round 0 m = Δ = [-1.25, 0.25, 0.25];
    # round 1 (n = 2, 5, 1) Δ = [(1 + 7.5)/8, (−2 + 5 + 0.2)/8, (0.2 − 1.5)/8]
    #                        = [1.0625, 0.4, −0.1625],
    # m = 0.5·m + 0.5·Δ = [−0.09375, 0.325, 0.04375]
    close(hist[0][0], [-0.25, -1.75, 0.75])
    close(hist[1][1]["m/w"].tolist(), [-0.09375, 0.325, 0.04375])
    close(hist[1][0], [-0.34375, -1.425, 0.79375])
    assert hist[1][1]["m/w"].dtype == torch.float32


def test_fedavgm_paper_form_is_heavy_ball():
    hist = run_rule(FedAvgM(FedAvgMConfig(form="paper", beta1=0.9, server_lr=0.5)))
    theta, m = list(THETA0), None
    for (got, _), ups in zip(hist, ROUNDS):
        d = weighted(ups)
        m = d if m is None else [0.9 * a + b for a, b in zip(m, d)]
        theta = [t + 0.5 * a for t, a in zip(theta, m)]
        close(got, theta)


@pytest.mark.parametrize("rule,cls,cfg", [
    ("adagrad", FedAdagrad, FedAdagradConfig),
    ("yogi", FedYogi, FedYogiConfig),
    ("adam", FedAdam, FedAdamConfig),
])
def test_adaptive_rules(rule, cls, cfg):
    hist = run_rule(cls(cfg()))
    for (got, state), (theta, m, v) in zip(hist, oracle_adaptive(rule)):
        close(got, theta)
        close(state["v/w"].tolist(), v)
        if rule != "adagrad":
            close(state["m/w"].tolist(), m)
        assert all(t.dtype == torch.float32 for t in state.values())


def test_adaptive_rules_hand_values():
    # FedAdam round 0: Δ = mean(Δ_A, Δ_B) = [-0.5, 0.5, 0.1] (unweighted), m = Δ,
    # v = 0.99·1e-6 + 0.01·m² -> for w[0]: 0.99e-6 + 0.0025 = 0.00250099,
    # θ = 1 + 1e-3 · (-0.5) / (√0.00250099 + 1e-3)
    hist = run_rule(FedAdam(FedAdamConfig()), ROUNDS[:1])
    v0 = 0.99e-6 + 0.01 * 0.25
    assert math.isclose(hist[0][0][0], 1 - 1e-3 * 0.5 / (math.sqrt(v0) + 1e-3), rel_tol=1e-6)
    # FedAdagrad round 0: v = 1e-6 + 0.25, θ = 1 + 1e-3·(-0.5)/(√v + 1e-3)
    hist = run_rule(FedAdagrad(FedAdagradConfig()), ROUNDS[:1])
    v0 = 1e-6 + 0.25
    assert math.isclose(hist[0][0][0], 1 - 1e-3 * 0.5 / (math.sqrt(v0) + 1e-3), rel_tol=1e-6)


def test_paper_form_squares_delta_not_momentum():
    ref = run_rule(FedAdam(FedAdamConfig()))
    paper = run_rule(FedAdam(FedAdamConfig(form="paper")))
    # paper round 0: m = (1−β1)Δ, v = β2 τ² + (1−β2) Δ²
    d = unweighted(ROUNDS[0])
    close(paper[0][1]["m/w"].tolist(), [0.5 * x for x in d])
    close(paper[0][1]["v/w"].tolist(), [0.99e-6 + 0.01 * x * x for x in d])
    assert ref[1][0] != paper[1][0]


def test_fedopt_weighted_option():
    hist = run_rule(FedAdagrad(FedAdagradConfig(weighted=True)), ROUNDS[:1])
    d = weighted(ROUNDS[0])
    close(hist[0][0], [t + 1e-3 * x / (math.sqrt(1e-6 + x * x) + 1e-3)
                       for t, x in zip(THETA0, d)])


def test_scaffold_server_rule_divides_by_total_clients():
    algo = Scaffold(ScaffoldConfig())
    dcs = [[[0.2, -0.4, 1.0], [0.6, 0.0, -1.0]],
           [[1.0, 1.0, 1.0], [0.5, -0.5, 0.25], [0.0, 0.3, 0.0]]]
    n_total = 5
    theta, state, c = list(THETA0), {}, [0.0, 0.0, 0.0]
    for ups, dc in zip(ROUNDS[:2], dcs):
        glob = {"w": torch.tensor(theta)}
        new = algo.fold(glob, updates_for(theta, ups, dc), state, n_total)
        want = [t + w for t, w in zip(theta, weighted(ups))]
        close(new["w"].tolist(), want)
        c = [ci + sum(d[i] for d in dc) / n_total for i, ci in enumerate(c)]
        close(state["c/w"].tolist(), c)
        theta = new["w"].tolist()
    # by hand, after round 0: c = (0.2 + 0.6, −0.4 + 0, 1 − 1) / 5
    # after round 1: + (1.5, 0.8, 1.25) / 5
    close(state["c/w"].tolist(), [(0.8 + 1.5) / 5, (-0.4 + 0.8) / 5, 1.25 / 5])


def test_scaffold_server_rejects_updates_without_control_variates():
    from fedllm.errors import FedLLMError

    with pytest.raises(FedLLMError, match="scaffold_dc"):
        Scaffold(ScaffoldConfig()).fold({"w": torch.tensor(THETA0)},
                                        updates_for(THETA0, ROUNDS[0]), {}, 5)


def test_fedprox_term_value_and_gradient():
    from fedllm.messages import ClientInstruction

    prox = FedProx(FedProxConfig(mu=0.5))
    ins = ClientInstruction(cohort="global", round=0, client_id="a",
                            params={"w": torch.tensor([1.0, 2.0])}, lr=0.1, seed=0)
    p = torch.nn.Parameter(torch.tensor([2.0, 0.0]))
    call(prox, "fedllm_client_begin", instruction=ins, params={"w": p})
    term = call(prox, "fedllm_loss_terms", instruction=ins, params={"w": p})
    # μ/2 ‖θ − θ_t‖² = 0.25 · (1 + 4)
    assert math.isclose(float(term.detach()), 1.25)
    term.backward()
    assert p.grad.tolist() == [0.5 * 1.0, 0.5 * -2.0]  # μ (θ − θ_t)
    call(prox, "fedllm_client_end", instruction=ins)
    assert not prox._anchor
