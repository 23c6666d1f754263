"""Dynamic local steps: ceil(n_k · epochs / (R·K/N) / (batch · accum))."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from fedllm.config import RunConfig, TrainConfig
from fedllm.testing import call
from fedllm_tasks.dpo import DPO, DPOConfig
from fedllm_tasks.sft import SFT, SFTConfig
from fedllm_tasks.steps import dynamic_local_steps


def fake_ctx(rounds, k, n, batch, accum, schedule_rounds=None):
    return SimpleNamespace(
        config=RunConfig(rounds=rounds, clients_per_round=k, schedule_rounds=schedule_rounds,
                         train=TrainConfig(batch_size=batch, grad_accum=accum)),
        dataset=SimpleNamespace(clients={f"c{i}": {} for i in range(n)}))


# FedLLM-Bench Table 7, Fed-ChatbotPA: 200 rounds, 10 of 747 clients, DPO batch 8.
# A client is sampled 200·10/747 = 2.677 times: 5 samples -> 5·3/2.677/8 = 0.70 -> 1 step,
# 13 -> 1.82 -> 2, 100 -> 14.006 -> 15.
@pytest.mark.parametrize("n_k, steps", [(5, 1), (13, 2), (100, 15)])
def test_table7_chatbotpa_step_counts(n_k, steps):
    ctx = fake_ctx(200, 10, 747, 8, 1)
    task = DPO(DPOConfig(local_steps="dynamic"))
    assert call(task, "fedllm_local_steps", ctx=ctx, client_id="c0", num_samples=n_k) == steps


def test_the_plan_is_schedule_rounds_when_set():
    """A run planned for 200 rounds sizes its steps for 200, however many it runs so far."""
    task = DPO(DPOConfig(local_steps="dynamic"))
    assert task.plans_rounds and not DPO(DPOConfig()).plans_rounds
    ctx = fake_ctx(50, 10, 747, 8, 1, schedule_rounds=200)
    assert call(task, "fedllm_local_steps", ctx=ctx, client_id="c0", num_samples=100) == 15


def test_formula_uses_grad_accum_epochs_and_caps_k_at_n():
    # Fed-WildChat multi-turn shape (50 rounds, 3 of 50) with batch 16, accum 2, 1 epoch
    assert dynamic_local_steps(1000, rounds=50, clients_per_round=3, num_clients=50,
                               batch_size=16, grad_accum=2, epochs=1) == math.ceil(1000 / 3 / 32)
    # every client every round (K >= N): each is visited R times
    assert dynamic_local_steps(40, rounds=4, clients_per_round=10, num_clients=2,
                               batch_size=2, grad_accum=1) == 15


def test_fixed_is_the_default_and_defers_to_train_local_steps():
    ctx = fake_ctx(200, 10, 747, 8, 1)
    assert call(SFT(SFTConfig()), "fedllm_local_steps", ctx=ctx, client_id="c0",
                num_samples=100) is None


def test_the_engine_runs_each_client_its_own_step_count(tmp_path):
    from tests.helpers import run_quick

    sizes = {"small": 3, "large": 17}
    data = {cid: [{"instruction": f"Say {i}.", "response": f"{i}."} for i in range(n)]
            for cid, n in sizes.items()}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    eng = run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={path}",
                    "evaluators=[]", "task.local_steps=dynamic", "rounds=1")
    clients = eng.history[0]["cohorts"]["global"]["clients"]
    # R=1, K=2, N=2, batch 2, accum 1, 3 epochs: ceil(n·3/2)
    assert {c: s["local_steps"] for c, s in clients.items()} == {"small": 5, "large": 26}
