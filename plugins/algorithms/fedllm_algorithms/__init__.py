"""fedllm's built-in algorithms and samplers, each registered as its own entry point.

Algorithms (``algorithm: {name: ...}``), FedLLM-Bench's eight baselines with the reference
code's defaults (SPEC §3): ``local``, ``fedavg``, ``fedprox`` (μ), ``scaffold``, ``fedavgm``
(β1), ``fedadagrad`` / ``fedyogi`` / ``fedadam`` (η_s, τ_s, β1, β2). Where the reference departs
from a method's paper, ``form: paper`` selects the paper's rule (FedAvgM, FedYogi, FedAdam).

Samplers (``sampler: {name: ...}``): ``uniform`` (the reference's draw), ``all``, and the
cluster samplers that split the federation by a client metadata field. FedLLM-Bench §4.2's
language-personalised runs are plain FedAvg with a cluster sampler::

    # FedSamLang: FedAvg among clients of the same language -> adapters/<language>/
    sampler: {name: samlang}
    # FedSimLang: FedAvg among clients of the same language family -> adapters/<family>/
    sampler: {name: simlang}
    # any field, any grouping
    sampler: {name: cluster, key: region, families: {europe: [fr, de], asia: [jp]}}
"""
