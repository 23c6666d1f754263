"""The ``aggregation_weights`` capability: an algorithm that declares it gives the same new
global adapter when handed one update holding the declared weighted mean (what secure
aggregation lets the server see) as when handed the individual updates; the others do not
declare it."""

from __future__ import annotations

import pytest
import torch

from fedllm.messages import ClientUpdate
from fedllm.testing import call, component

ROUNDS = 3


def _updates(round: int, theta: dict[str, torch.Tensor]) -> list[ClientUpdate]:
    g = torch.Generator().manual_seed(round)
    return [ClientUpdate(client_id=f"c{i}", num_samples=n,
                         params={k: v + 0.1 * torch.randn(v.shape, generator=g)
                                 for k, v in theta.items()})
            for i, n in enumerate([1, 4, 2])]


def _mean(updates: list[ClientUpdate], weights: str) -> ClientUpdate:
    w = [float(u.num_samples) if weights == "samples" else 1.0 for u in updates]
    params = {k: sum(wi * u.params[k] for wi, u in zip(w, updates)) / sum(w)
              for k in updates[0].params}
    return ClientUpdate(client_id="sum", num_samples=sum(u.num_samples for u in updates),
                        params=params, members=[m for u in updates for m in u.clients()])




@pytest.mark.parametrize("name,cfg", [
    ("fedavg", {}), ("fedprox", {}), ("fedavgm", {}), ("fedavgm", {"form": "paper"}),
    ("fedadagrad", {}), ("fedyogi", {}), ("fedadam", {}), ("fedadam", {"weighted": True}),
])
def test_declared_weighted_mean_stands_for_the_updates(name, cfg):
    per_client, pooled = component("algorithm", name, **cfg), component("algorithm", name, **cfg)
    weights = per_client.cap("aggregation_weights")
    assert weights == ("samples" if name in ("fedavg", "fedprox", "fedavgm")
                       or cfg.get("weighted") else "uniform")
    theta_a = theta_b = {"w": torch.linspace(-1, 1, 6).reshape(2, 3)}
    state_a: dict = {}
    state_b: dict = {}
    for r in range(ROUNDS):  # several rounds: server moments must evolve identically
        ups = _updates(r, theta_a)
        theta_a = call(per_client, "fedllm_aggregate", cohort="global", round=r,
                       global_params=theta_a, updates=iter(ups), state=state_a)
        theta_b = call(pooled, "fedllm_aggregate", cohort="global", round=r,
                       global_params=theta_b, updates=iter([_mean(ups, weights)]),
                       state=state_b)
        torch.testing.assert_close(theta_b["w"], theta_a["w"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["scaffold", "local"])
def test_algorithms_needing_individual_updates_do_not_declare_weights(name):
    assert component("algorithm", name).cap("aggregation_weights") is None
