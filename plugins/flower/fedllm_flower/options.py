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
    """``flower-sim``: Flower's simulation engine runs each round's clients on ``workers`` Ray
    actors at once (each loads the frozen base once per run and keeps it); the updates fold in
    sampling order, so the adapter is the same for any number of workers."""

    num_supernodes: int | None = Field(
        None, ge=1, description="Virtual SuperNodes (clients are assigned to them "
        "round-robin; each runs one client at a time). None: max(2, workers).")
    workers: int | None = Field(
        None, ge=1, description="ClientApp workers (Ray actors) that run a round's clients "
        "concurrently, e.g. one per GPU. None: as many as fit in `cpus` (and the GPUs) at "
        "cpus_per_worker / gpus_per_worker each.")
    cpus: int | None = Field(
        None, ge=1, description="CPUs Ray may use in all (None: enough for `workers` at "
        "cpus_per_worker, or 2 when workers is None).")
    cpus_per_worker: float = Field(
        1.0, gt=0, description="CPUs reserved per worker (torch threads are "
        "runtime.threads).")
    gpus_per_worker: float = Field(
        0.0, ge=0, description="GPUs reserved per worker: 1 for one worker per GPU, 0.5 "
        "for two per GPU, 0 for CPU workers.")
    gpus: float | None = Field(
        None, ge=0, description="GPUs Ray may use (None: every GPU it detects).")

    def ray_resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """(``ray.init`` resources, per-worker resources) such that Flower builds exactly
        ``workers`` actors (fewer only if the GPUs hold fewer)."""
        import math

        if self.workers is None:
            cpus, per_cpu = float(self.cpus or 2), self.cpus_per_worker
        else:
            cpus = float(self.cpus or max(1, math.ceil(self.workers * self.cpus_per_worker
                                                       - 1e-9)))
            # Flower makes int(cpus / per_cpu) actors: per_cpu just under cpus / workers
            per_cpu = cpus / self.workers * (1 - 1e-9)
        init: dict[str, float] = {"num_cpus": int(cpus)}
        if self.gpus is not None:
            init["num_gpus"] = self.gpus
        return init, {"num_cpus": per_cpu, "num_gpus": self.gpus_per_worker}

    def problems(self) -> list[str]:
        f = "runtime.backend_options"
        out = []
        if self.workers is not None and self.cpus is not None \
                and self.cpus < self.workers * self.cpus_per_worker - 1e-9:
            out.append(f"{f}.cpus={self.cpus} holds fewer than workers={self.workers} x "
                       f"cpus_per_worker={self.cpus_per_worker:g}; raise cpus or lower "
                       "cpus_per_worker")
        if self.workers is None and self.cpus is not None and self.cpus < self.cpus_per_worker:
            out.append(f"{f}.cpus={self.cpus} holds no worker at cpus_per_worker="
                       f"{self.cpus_per_worker:g}")
        if self.gpus is not None and self.gpus_per_worker > self.gpus:
            out.append(f"{f}.gpus={self.gpus:g} holds no worker at gpus_per_worker="
                       f"{self.gpus_per_worker:g}")
        return out

    def supernodes(self) -> int:
        return self.num_supernodes or max(2, self.workers or 0)
