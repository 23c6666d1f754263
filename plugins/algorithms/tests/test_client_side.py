"""Client-side hooks on small tensors: SCAFFOLD's correction and control-variate update, and
its per-client state living on disk rather than in the plugin."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fedllm.errors import FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate
from fedllm.state import ClientStateStore
from fedllm.testing import call
from fedllm_algorithms.scaffold import C_KEY, DC_KEY, Scaffold, ScaffoldConfig


def instruction(theta, c, round=0, client="k"):
    ins = ClientInstruction(cohort="global", round=round, client_id=client,
                            params={"w": torch.tensor(theta)}, lr=0.1, seed=0)
    call(Scaffold(ScaffoldConfig()), "fedllm_configure_client", instruction=ins, state=c)
    return ins


def test_scaffold_client_round_trip(tmp_path):
    ctx = SimpleNamespace(client_state=ClientStateStore(tmp_path / "cs"))
    algo = Scaffold(ScaffoldConfig())
    # the client's stored c_k from an earlier round, and the server's c
    ctx.client_state.save("global", "k", 0, {"w": torch.tensor([0.5, 0.5])})
    ins = instruction([1.0, 2.0], {"c/w": torch.tensor([1.0, 2.0])}, round=1)
    assert ins.extras[C_KEY]["w"].tolist() == [1.0, 2.0]

    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    call(algo, "fedllm_client_begin", ctx=ctx, instruction=ins, params={"w": p})
    for lr in (0.1, 0.1):  # τ = 2 steps (the optimizer step itself is skipped here)
        call(algo, "fedllm_after_step", instruction=ins, params={"w": p}, lr=lr)
    # θ ← θ − η (c − c_k) twice: c − c_k = [0.5, 1.5]
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 2 * 0.05, 2.0 - 2 * 0.15]))

    theta_k = torch.tensor([0.6, 1.6])
    up = ClientUpdate(client_id="k", num_samples=3, params={"w": theta_k})
    call(algo, "fedllm_client_end", ctx=ctx, instruction=ins, update=up)
    # c_k⁺ = c_k − c + (θ_t − θ_k) / (τ η) = [0.5 − 1 + 0.4/0.2, 0.5 − 2 + 0.4/0.2]
    want = torch.tensor([1.5, 0.5])
    assert torch.allclose(ctx.client_state.load("global", "k")["w"], want)
    assert torch.allclose(up.extras[DC_KEY]["w"], torch.tensor([1.0, 0.0]), atol=1e-6)
    assert up.extras[DC_KEY]["w"].dtype == torch.float32
    assert not algo._clients, "nothing about the client stays in the plugin after its update"


def test_scaffold_zero_variates_leave_training_untouched(tmp_path):
    ctx = SimpleNamespace(client_state=ClientStateStore(tmp_path / "cs"))
    algo = Scaffold(ScaffoldConfig())
    ins = instruction([1.0, -1.0], {})  # round 0: c = 0 and no stored c_k
    p = torch.nn.Parameter(torch.tensor([0.3, 0.7]))
    before = p.detach().clone()
    call(algo, "fedllm_client_begin", ctx=ctx, instruction=ins, params={"w": p})
    call(algo, "fedllm_after_step", instruction=ins, params={"w": p}, lr=0.1)
    assert torch.equal(p.detach(), before)  # exactly: SCAFFOLD's round 0 is FedAvg's
    up = ClientUpdate(client_id="k", num_samples=1, params={"w": p.detach().clone()})
    call(algo, "fedllm_client_end", ctx=ctx, instruction=ins, update=up)
    # c_k⁺ = (θ_t − θ_k) / (1 · 0.1)
    assert torch.allclose(ctx.client_state.load("global", "k")["w"], torch.tensor([7.0, -17.0]))


def test_scaffold_without_steps_is_an_error(tmp_path):
    ctx = SimpleNamespace(client_state=ClientStateStore(tmp_path / "cs"))
    algo = Scaffold(ScaffoldConfig())
    ins = instruction([1.0], {})
    call(algo, "fedllm_client_begin", ctx=ctx, instruction=ins, params={"w": torch.nn.Parameter(
        torch.tensor([1.0]))})
    with pytest.raises(FedLLMError, match="no optimizer steps"):
        call(algo, "fedllm_client_end", ctx=ctx, instruction=ins, update=ClientUpdate(
            client_id="k", num_samples=1, params={"w": torch.tensor([1.0])}))
