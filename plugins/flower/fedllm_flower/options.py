"""The options of the Flower backends and of SecAgg+ (pydantic only: importing this module
costs nothing, so ``fedllm plugins`` and config validation never import Flower)."""

from __future__ import annotations

from pydantic import Field

from fedllm import PluginConfig

#: where the SecAgg+ options live in a run config
SECAGG_FIELD = "runtime.backend_options.secure_aggregation"


class SecAggConfig(PluginConfig):
    """Flower SecAgg+ parameters (see ``flwr.server.workflow.SecAggPlusWorkflow``)."""

    num_shares: int | float = Field(
        1.0, gt=0, description="Shares each node's secret is split into: a count (> 2) or a "
        "fraction of the round's SuperNodes (1.0: all of them).")
    reconstruction_threshold: int | float = Field(
        0.5, gt=0, description="Shares needed to rebuild a secret: a count (< num_shares) or a "
        "fraction of num_shares (at least 2). Up to num_shares − threshold nodes may drop.")
    max_weight: float = Field(
        1000.0, gt=0, description="Largest weight one SuperNode may report in a round (its "
        "clients' summed sample counts, or their number for uniform weights). Precision is "
        "about clipping_range / quantization_range × max_weight / Σ weights.")
    clipping_range: float = Field(
        1.0, gt=0, description="Bound on |weight/max_weight × Δ| per adapter entry; a node "
        "whose update exceeds it fails loudly instead of being clipped.")
    quantization_range: int = Field(
        2**22, gt=0, description="Integer levels the clipping range is quantised to.")


class GridConfig(PluginConfig):
    round_timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for a round's replies (None: wait for all).")
    min_clients: int = Field(
        1, ge=1, description="Fewest answering clients a round may complete with.")
    wait_nodes: float = Field(
        60.0, gt=0, description="Seconds to wait at start for the SuperNodes to connect.")
    ordered: bool = Field(
        True, description="Fold updates in sampling order (reproducible: the in-process result "
        "bit for bit) instead of arrival order (holds fewer updates in memory).")
    num_nodes: int | None = Field(
        None, ge=1, description="SuperNodes to wait for before the first round (None: 1; "
        "flower-sim: num_supernodes).")
    secure_aggregation: SecAggConfig | None = Field(
        None, description="Flower SecAgg+ (e.g. `{}` for the defaults): the coordinator "
        "learns only the round's weighted mean of each SuperNode's update; needs an algorithm "
        "that declares a weighted-mean aggregate and clients on at least 2 nodes per round.")


class SimConfig(GridConfig):
    num_supernodes: int = Field(2, ge=1, description="Virtual SuperNodes (clients are "
                                "assigned to them round-robin).")
    cpus: int = Field(2, ge=1, description="CPUs Ray may use in all.")
    cpus_per_node: float = Field(1.0, gt=0, description="CPUs reserved per running ClientApp.")
    gpus_per_node: float = Field(0.0, ge=0, description="GPUs reserved per running ClientApp.")
