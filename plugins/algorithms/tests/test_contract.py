"""Every algorithm and sampler of this distribution passes its kind's contract suite."""

from __future__ import annotations

from fedllm.testing.contracts import AlgorithmContract, SamplerContract


class TestFedAvg(AlgorithmContract):
    name = "fedavg"
    equals_fedavg = {}


class TestFedProx(AlgorithmContract):
    name = "fedprox"
    equals_fedavg = {}  # the server side is FedAvg's; μ only changes the local loss


class TestScaffold(AlgorithmContract):
    name = "scaffold"


class TestFedAvgM(AlgorithmContract):
    name = "fedavgm"


class TestFedAvgMPaperForm(AlgorithmContract):
    name = "fedavgm"
    config = {"form": "paper"}


class TestFedAdagrad(AlgorithmContract):
    name = "fedadagrad"


class TestFedYogi(AlgorithmContract):
    name = "fedyogi"


class TestFedAdam(AlgorithmContract):
    name = "fedadam"


class TestFedAdamWeighted(AlgorithmContract):
    name = "fedadam"
    config = {"weighted": True}


class TestLocal(AlgorithmContract):
    name = "local"
    clients = 1  # one client trains alone


class TestUniform(SamplerContract):
    name = "uniform"


class TestAll(SamplerContract):
    name = "all"


class TestCluster(SamplerContract):
    name = "cluster"
    config = {"key": "topic"}


class TestSamLang(SamplerContract):
    name = "samlang"


class TestSimLang(SamplerContract):
    name = "simlang"


class TestPoisson(SamplerContract):
    name = "poisson"
