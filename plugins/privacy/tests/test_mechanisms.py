"""Clipping, noise, FedLLM-Bench's σ formula and the RDP accountant, on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from fedllm.errors import ConfigError
from fedllm.messages import ClientInstruction, ClientUpdate
from fedllm.testing import call
from fedllm_privacy.mechanisms import (
    calibrate_noise_multiplier,
    clip_,
    l2_norm,
    paper_sensitivity,
    paper_sigma,
    rdp_epsilon,
)
from fedllm_privacy.user_dp import UserDP, UserDPConfig


def with_norm(norm: float) -> dict[str, torch.Tensor]:
    """Two tensors whose joint L2 norm is ``norm`` (3-4-0 / 12 split)."""
    return {"a": torch.tensor([3.0, 4.0]) * norm / 13, "b": torch.tensor([[12.0, 0.0]]) * norm / 13}


def user_round(ctx, cfg: UserDPConfig, delta: dict, seed: int = 7):
    glob = {k: torch.full_like(v, 0.25) for k, v in delta.items()}
    ins = ClientInstruction(cohort="global", round=0, client_id="c0", params=glob, lr=1e-3,
                            seed=seed)
    upd = ClientUpdate(client_id="c0", num_samples=5,
                       params={k: glob[k] + v for k, v in delta.items()})
    call(UserDP(cfg), "fedllm_privatize", ctx=ctx, instruction=ins, update=upd)
    return {k: upd.params[k] - glob[k] for k in glob}, upd


# --------------------------------------------------------------------------- clipping


def test_clip_large_update_to_c_and_keep_direction():
    d = with_norm(10.0)
    before = {k: v.clone() for k, v in d.items()}
    norm, scale = clip_(d, 1.0)
    assert norm == pytest.approx(10.0, rel=1e-6) and scale == pytest.approx(0.1)
    assert l2_norm(d) == pytest.approx(1.0, rel=1e-6)
    for k in d:
        torch.testing.assert_close(d[k], before[k] / 10)


def test_clip_small_update_unchanged():
    d = with_norm(0.5)
    before = {k: v.clone() for k, v in d.items()}
    norm, scale = clip_(d, 1.0)
    assert norm == pytest.approx(0.5, rel=1e-6) and scale == 1.0
    for k in d:
        assert torch.equal(d[k], before[k])


def test_user_dp_clips_the_update_before_upload_with_zero_noise(fake_ctx):
    sent, upd = user_round(fake_ctx(), UserDPConfig(clip_norm=1.0, sigma=0.0), with_norm(10.0))
    assert l2_norm(sent) == pytest.approx(1.0, rel=1e-5)
    assert upd.metrics["user-dp/update_norm"] == pytest.approx(10.0, rel=1e-5)
    sent, _ = user_round(fake_ctx(), UserDPConfig(clip_norm=1.0, sigma=0.0), with_norm(0.5))
    for k, v in with_norm(0.5).items():
        torch.testing.assert_close(sent[k], v)


# --------------------------------------------------------------------------- noise


def test_noise_std_matches_sigma_and_is_seeded(fake_ctx):
    sigma = 0.3
    zero = {"w": torch.zeros(200, 250), "b": torch.zeros(10_000)}
    sent, _ = user_round(fake_ctx(), UserDPConfig(clip_norm=1.0, sigma=sigma), zero, seed=1)
    flat = torch.cat([v.flatten() for v in sent.values()]).double()
    assert abs(float(flat.mean())) < 0.01
    assert float(flat.std()) == pytest.approx(sigma, rel=0.05)
    again, _ = user_round(fake_ctx(), UserDPConfig(clip_norm=1.0, sigma=sigma), zero, seed=1)
    other, _ = user_round(fake_ctx(), UserDPConfig(clip_norm=1.0, sigma=sigma), zero, seed=2)
    for k in sent:
        assert torch.equal(sent[k], again[k])
        assert not torch.equal(sent[k], other[k])


# --------------------------------------------------------------------------- paper formula


def test_paper_sigma_on_fed_wildchat_setup():
    # FedLLM-Bench Table 7 / App. D on Fed-WildChat: 5 of N=100 clients per round (q=0.05),
    # R=100 rounds, η=2e-5, |D|=52,703 samples, δ=1e-4, C=1.
    # Δ_l = 2·2e-5·1 / (52703/100) = 4e-5 / 527.03 = 7.589701e-8
    # √(2·0.05·100·ln 1e4) = √(10·9.2103404) = √92.103404 = 9.5970518
    # ε=1 → σ = 7.589701e-8 · 9.5970518 = 7.283875e-7; ε=0.1 → 7.283875e-6
    sens = paper_sensitivity(lr=2e-5, clip_norm=1.0, dataset_size=52_703, num_clients=100)
    assert sens == pytest.approx(7.589701e-8, rel=1e-6)
    for eps, want in ((1.0, 7.283875e-7), (0.1, 7.283875e-6)):
        got = paper_sigma(epsilon=eps, delta=1e-4, sensitivity=sens, sample_rate=0.05,
                          rounds=100)
        assert got == pytest.approx(want, rel=1e-6)


def test_user_dp_calibrates_from_run_config(fake_ctx):
    # N=10 clients, |D|=200, K=3, R=10, η=5e-3, C=0.5, ε=1, δ=1e-4:
    # Δ_l = 2·5e-3·0.5/(200/10) = 2.5e-4; √(2·0.3·10·ln 1e4) = √55.262042 = 7.4338444
    ctx = fake_ctx(clients=10, samples=200, k=3, rounds=10, lr=5e-3)
    dp = UserDP(UserDPConfig(clip_norm=0.5, epsilon=1.0, delta=1e-4))
    assert dp.resolve(ctx) == pytest.approx(2.5e-4 * 7.4338444, rel=1e-6)
    # 'update' sensitivity: Δ = 2C = 1.0
    dp = UserDP(UserDPConfig(clip_norm=0.5, epsilon=1.0, delta=1e-4, sensitivity="update"))
    assert dp.resolve(ctx) == pytest.approx(7.4338444, rel=1e-6)
    # dataset_size / num_clients override the loaded dataset (|D|=400, N=20: q=0.15)
    dp = UserDP(UserDPConfig(clip_norm=0.5, dataset_size=400, num_clients=20))
    want = 2 * 5e-3 * 0.5 / 20 * math.sqrt(2 * 0.15 * 10 * math.log(1e4))
    assert dp.resolve(ctx) == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- accountant


def test_rdp_epsilon_matches_published_values():
    # opacus' own accountant test (tests/accountants_test.py): z=1.5, q=0.04, 2250 steps.
    assert rdp_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250,
                       delta=1e-5) == pytest.approx(7.32911117143, abs=1e-6)
    # STACK.md §5g: σ=1.1, q=0.01, 1000 steps, δ=1e-5 → ε=1.7118
    assert rdp_epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=1000,
                       delta=1e-5) == pytest.approx(1.7118, abs=1e-4)
    assert rdp_epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=0, delta=1e-5) == 0.0
    assert rdp_epsilon(noise_multiplier=0.0, sample_rate=0.01, steps=3, delta=1e-5) == math.inf


@pytest.mark.parametrize("target,q,steps", [(3.0, 0.01, 1000), (1.0, 0.3, 10), (10.0, 1.0, 5)])
def test_calibration_lands_within_one_percent_below_target(target, q, steps):
    z = calibrate_noise_multiplier(target_epsilon=target, delta=1e-5, sample_rate=q, steps=steps)
    eps = rdp_epsilon(noise_multiplier=z, sample_rate=q, steps=steps, delta=1e-5)
    assert 0.99 * target <= eps <= target


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,field", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": -1}, "epsilon"),
    ({"delta": 0}, "delta"), ({"delta": 1}, "delta"), ({"delta": 1.5}, "delta"),
    ({"clip_norm": 0}, "clip_norm"), ({"clip_norm": -2}, "clip_norm"),
    ({"sigma": -0.1}, "sigma"),
])
def test_bad_config_is_a_clear_config_error(kwargs, field):
    from fedllm.config import resolve

    for name in ("user-dp", "dp-fedavg"):
        if name == "dp-fedavg" and field == "sigma":
            kwargs, field = {"noise_multiplier": -0.1}, "noise_multiplier"
        with pytest.raises(ConfigError) as exc:
            resolve({"privacy": [{"name": name, **kwargs}]})
        msg = str(exc.value)
        assert f"privacy.0.{field}" in msg and repr(next(iter(kwargs.values()))) in msg


def test_dp_fedavg_needs_noise_or_target():
    from fedllm.config import resolve

    with pytest.raises(ConfigError, match="noise_multiplier .* or epsilon"):
        resolve({"privacy": [{"name": "dp-fedavg", "epsilon": None}]})


def test_missing_dataset_size_for_calibration(fake_ctx):
    ctx = fake_ctx(dataset=False)
    with pytest.raises(ConfigError, match="dataset size"):
        UserDP(UserDPConfig(num_clients=10)).resolve(ctx)
    with pytest.raises(ConfigError, match="number of clients"):
        UserDP(UserDPConfig(dataset_size=100)).resolve(ctx)
    # a fixed σ needs neither
    assert UserDP(UserDPConfig(sigma=0.1)).resolve(ctx) == 0.1


def test_mechanism_functions_reject_bad_values():
    with pytest.raises(ConfigError, match="epsilon must be .* > 0, got 0"):
        paper_sigma(epsilon=0, delta=1e-4, sensitivity=1, sample_rate=0.1, rounds=1)
    with pytest.raises(ConfigError, match=r"delta must be in the open interval \(0, 1\), got 1"):
        rdp_epsilon(noise_multiplier=1, sample_rate=0.1, steps=1, delta=1)
    with pytest.raises(ConfigError, match="clip_norm must be > 0, got 0"):
        clip_({"a": torch.ones(2)}, 0)
    with pytest.raises(ConfigError, match="dataset_size"):
        paper_sensitivity(lr=1e-3, clip_norm=1, dataset_size=0, num_clients=3)
