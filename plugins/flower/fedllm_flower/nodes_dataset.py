"""``dataset: {name: flower-nodes}``: a coordinator that holds none of the data owners' data.

Under ``fedllm serve`` the federation's clients are the ids the SuperNodes claim with
``fedllm join --client-id`` (sorted, so the run does not depend on node ids). The coordinator
loads no samples; each node builds its own data with the ``on_nodes`` dataset section plus its
own ``--data`` / ``--set dataset.*``. Evaluators that need held-out samples have none here:
use ones with their own question sets, or give the coordinator a dataset instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Dataset, Plugin, PluginConfig, hookimpl
from fedllm.data import CLIENT, FederatedDataset, fingerprint
from fedllm.errors import FedLLMError

if TYPE_CHECKING:
    from fedllm.context import RunContext

NAME = "flower-nodes"


class NodesConfig(PluginConfig):
    on_nodes: dict[str, Any] = Field(
        default_factory=lambda: {"name": "fedllm-bench-json"},
        description="The dataset section every SuperNode loads its own data with (`fedllm "
        "join --data PATH` sets its `path`; `--set dataset.KEY=VALUE` the rest).")


def node_dataset(section: dict[str, Any]) -> dict[str, Any]:
    """The dataset section a SuperNode uses for a run whose coordinator has ``section``."""
    if section.get("name") != NAME:
        return section
    return dict(section.get("on_nodes") or {})


class NodesDataset(Dataset):
    def __init__(self, config: NodesConfig):
        self.config = config

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        import datasets

        nodes = ctx.backend.call("fedllm_node_clients", ctx=ctx)
        if nodes is None:
            raise FedLLMError(f"dataset {NAME!r} takes its clients from the SuperNodes of "
                              "`fedllm serve` (runtime.backend 'flower'); elsewhere name a "
                              "dataset with the data")
        silent = sorted(n for n, ids in nodes.items() if not ids)
        if silent:
            raise FedLLMError(f"dataset {NAME!r} takes the client ids from the SuperNodes, but "
                              f"{len(silent)} of {len(nodes)} claim none: start every "
                              "`fedllm join` with --client-id ID")
        ids = sorted({c for claimed in nodes.values() for c in claimed})
        empty = datasets.Dataset.from_dict(
            {CLIENT: []}, features=datasets.Features({CLIENT: datasets.Value("string")}))
        return FederatedDataset(train=empty, heldout=None, clients={c: {} for c in ids},
                                fingerprint=fingerprint(NAME, ids),
                                info={"source": "SuperNodes", "nodes": len(nodes)})


plugin = Plugin(kind="dataset", name=NAME, factory=NodesDataset, Config=NodesConfig,
                description="Coordinator without data: clients are the ids SuperNodes claim "
                "(`fedllm join --client-id`); each node loads its own data (`on_nodes`).")
