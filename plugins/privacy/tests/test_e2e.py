"""End-to-end runs on the embedded default (tiny model): FedAvg + user-dp, FedAvg + dp-fedavg,
ε in metrics.jsonl and the run summary, the budget stop."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from fedllm.errors import FedLLMError
from fedllm_privacy.mechanisms import paper_epsilon, rdp_epsilon
from tests.helpers import run_quick

FAST = ["eval_every=0", "evaluators=[{name: heldout-loss, max_samples_per_client: 2}]"]


def records(eng):
    return [json.loads(line) for line in
            (eng.run_dir.path / "metrics.jsonl").read_text().splitlines()]


def summary(eng) -> str:
    con = Console(record=True, width=200)
    con.print(eng.summary_table())
    return con.export_text()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run_quick(tmp_path_factory.mktemp("plain"), *FAST, name="plain")


def test_user_dp_without_noise_and_loose_clip_is_plain_fedavg(plain, tmp_path):
    eng = run_quick(tmp_path, *FAST, name="nonoise",
                    config={"privacy": [{"name": "user-dp", "sigma": 0.0, "clip_norm": 1e6}]})
    for k, v in plain.globals["global"].items():
        torch.testing.assert_close(eng.globals["global"][k], v, rtol=1e-5, atol=1e-7)


def test_fedavg_with_user_dp_reports_epsilon(plain, tmp_path):
    cfg = {"privacy": [{"name": "user-dp", "epsilon": 0.5, "delta": 1e-4, "clip_norm": 0.05,
                        "sensitivity": "update"}]}
    eng = run_quick(tmp_path, *FAST, name="udp", config=cfg)
    recs = records(eng)
    assert [r["round"] for r in recs] == [1, 2]
    dp = [r["privacy"]["user-dp"] for r in recs]
    # q = 2/10, R = 2, Δ = 2C = 0.1: σ = 0.1·√(2·0.2·2·ln 1e4)/0.5; ε(R) is the target
    sigma = 0.1 * (2 * 0.2 * 2 * 9.210340371976184) ** 0.5 / 0.5
    assert dp[0]["sigma"] == pytest.approx(sigma, rel=1e-9)
    assert dp[1]["epsilon"] == pytest.approx(0.5, rel=1e-9)
    assert dp[0]["epsilon"] == pytest.approx(
        paper_epsilon(sigma=sigma, delta=1e-4, sensitivity=0.1, sample_rate=0.2, rounds=1))
    # every client's pre-clip norm is recorded; the tiny C clips them all
    norms = [c["user-dp/update_norm"] for r in recs
             for c in r["cohorts"]["global"]["clients"].values()]
    assert len(norms) == 4 and all(n > 0.05 for n in norms) and dp[1]["clipped_fraction"] == 1.0
    # the noise moved the global model away from the non-private run
    diff = sum(float((eng.globals["global"][k] - v).norm())
               for k, v in plain.globals["global"].items())
    assert diff > 0.1
    assert "ε spent" in summary(eng)


def test_fedavg_with_dp_fedavg_reports_rdp_epsilon(tmp_path):
    cfg = {"privacy": [{"name": "dp-fedavg", "epsilon": 8.0, "delta": 1e-5, "clip_norm": 0.5}]}
    eng = run_quick(tmp_path, *FAST, name="central", config=cfg)
    recs = records(eng)
    dp = [r["privacy"]["dp-fedavg"] for r in recs]
    z, q = dp[0]["noise_multiplier"], dp[0]["sample_rate"]
    assert q == pytest.approx(0.2)
    for i, d in enumerate(dp):
        assert d["epsilon"] == pytest.approx(
            rdp_epsilon(noise_multiplier=z, sample_rate=q, steps=i + 1, delta=1e-5))
    assert dp[0]["epsilon"] < dp[1]["epsilon"] <= 8.0
    assert dp[1]["epsilon"] >= 0.99 * 8.0  # calibrated for the run's 2 rounds
    # clients' real sample counts are still what metrics.jsonl reports
    assert all(c["num_samples"] > 1 for r in recs
               for c in r["cohorts"]["global"]["clients"].values())
    text = summary(eng)
    assert "ε spent" in text and f"{dp[1]['epsilon']:.4g}" in text


def test_dp_fedavg_stops_before_exceeding_the_budget(tmp_path):
    one = rdp_epsilon(noise_multiplier=1.0, sample_rate=0.2, steps=1, delta=1e-5)
    two = rdp_epsilon(noise_multiplier=1.0, sample_rate=0.2, steps=2, delta=1e-5)
    budget = round((one + two) / 2, 4)
    cfg = {"privacy": [{"name": "dp-fedavg", "noise_multiplier": 1.0, "epsilon": budget}]}
    with pytest.raises(FedLLMError, match=f"round 2 would spend .* over the budget "
                                          f"epsilon={budget:g}; stopped after 1 rounds"):
        run_quick(tmp_path, *FAST, name="budget", config=cfg)
    lines = (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["privacy"]["dp-fedavg"]["epsilon"] == pytest.approx(one)
