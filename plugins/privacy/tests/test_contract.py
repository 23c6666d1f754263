"""user-dp and dp-fedavg pass the privacy contract suite on the tiny federation."""

from __future__ import annotations

from fedllm.testing.contracts import PrivacyContract


class TestUserDP(PrivacyContract):
    name = "user-dp"


class TestUserDPFixedSigma(PrivacyContract):
    name = "user-dp"
    config = {"sigma": 0.01, "sensitivity": "update"}


class TestDPFedAvg(PrivacyContract):
    name = "dp-fedavg"
    config = {"noise_multiplier": 0.5, "epsilon": None}


class TestSampleDP(PrivacyContract):
    name = "sample-dp"
