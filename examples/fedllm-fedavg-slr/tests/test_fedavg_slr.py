"""The example plugin's tests, written with fedllm's plugin author kit (``fedllm.testing``):
the algorithm contract suite, plus what this algorithm promises of its server learning rate."""

from __future__ import annotations

import torch

from fedllm.testing import call, component
from fedllm.testing.contracts import AlgorithmContract


class TestFedAvgSLR(AlgorithmContract):
    name = "fedavg-slr"
    config = {"server_lr": 0.5}
    equals_fedavg = {"server_lr": 1.0}  # η_s = 1 is FedAvg


def test_zero_server_lr_keeps_the_global_adapter(run_context):
    from fedllm.messages import ClientUpdate

    theta = run_context.get_params()
    ups = [ClientUpdate(client_id=str(i), num_samples=i + 1,
                        params={k: v + 0.1 * (i + 1) for k, v in theta.items()})
           for i in range(3)]
    new = call(component("algorithm", "fedavg-slr", server_lr=0.0), "fedllm_aggregate",
               cohort="global", round=0, global_params=theta, updates=iter(ups), state={})
    assert all(torch.equal(new[k], theta[k]) for k in theta)
