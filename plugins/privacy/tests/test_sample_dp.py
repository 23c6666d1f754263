"""sample-dp (DP-SGD with opacus) on the tiny model, and DP-FedAvg under Poisson client
sampling (what its accountant assumes)."""

from __future__ import annotations

import json

import pytest
import torch

from fedllm.errors import ConfigError
from fedllm.testing import run_quick


def test_sample_dp_clips_noises_and_accounts_per_client(tmp_path):
    eng = run_quick(tmp_path, "rounds=2", "privacy.0.name=sample-dp", "sampler.name=all",
                    "privacy.0.noise_multiplier=1.0", "evaluators=[]")
    recs = [json.loads(line) for line in
            (eng.run_dir.path / "metrics.jsonl").read_text().splitlines()]
    eps = [recs[r]["privacy"]["sample-dp"]["epsilon"] for r in (0, 1)]
    assert 0 < eps[0] < eps[1]  # every client trained twice: ε grows with its steps
    # the noise is real: a noiseless DP-SGD (only clipping) gives another adapter
    quiet = run_quick(tmp_path, "rounds=2", "privacy.0.name=sample-dp", "sampler.name=all",
                      "privacy.0.noise_multiplier=0.0", "evaluators=[]", name="z0")
    assert not all(torch.equal(eng.globals["global"][k], v)
                   for k, v in quiet.globals["global"].items())
    # opacus leaves nothing behind on the shared model: no hooks, no grad_sample
    assert not any(hasattr(p, "grad_sample") for p in eng.ctx.model.parameters())
    # and the same run again is bit-identical (the noise is seeded per client and round)
    again = run_quick(tmp_path, "rounds=2", "privacy.0.name=sample-dp", "sampler.name=all",
                      "privacy.0.noise_multiplier=1.0", "evaluators=[]", name="again")
    assert all(torch.equal(eng.globals["global"][k], v)
               for k, v in again.globals["global"].items())


def test_sample_dp_refuses_what_it_cannot_clip(tmp_path):
    with pytest.raises(ConfigError, match="loss terms whose gradient is not per-sample"):
        run_quick(tmp_path, "privacy.0.name=sample-dp", "algorithm.name=fedprox")
    with pytest.raises(ConfigError, match="train.grad_accum=2"):
        run_quick(tmp_path, "privacy.0.name=sample-dp", "train.grad_accum=2")


def test_dp_fedavg_under_poisson_sampling(tmp_path):
    """Each client joins with probability K/N; rounds vary in size (none too), and DP-FedAvg
    folds θ_t + (Σ clip Δ + ξ)/(qN) whatever the count."""
    eng = run_quick(tmp_path, "rounds=6", "sampler.name=poisson", "clients_per_round=1",
                    "privacy.0.name=dp-fedavg", "privacy.0.noise_multiplier=0.5",
                    "privacy.0.epsilon=null", "evaluators=[]")
    sizes = [len(r["cohorts"]["global"]["sampled"]) for r in eng.history]
    assert 0 in sizes and len(set(sizes)) > 1  # an empty round and rounds of other sizes
    assert all(torch.isfinite(v).all() for v in eng.globals["global"].values())
    assert eng.history[-1]["privacy"]["dp-fedavg"]["sample_rate"] == pytest.approx(0.1)


def test_a_poisson_round_without_clients_keeps_the_model(tmp_path):
    eng = run_quick(tmp_path, "rounds=6", "sampler.name=poisson", "clients_per_round=1",
                    "evaluators=[]", until=None)
    empty = [r for r in eng.history if not r["cohorts"]["global"]["sampled"]]
    assert empty and all(r["train_loss"] is None for r in empty)
