"""``dataset: flower-nodes``: the coordinator's clients are the ids its SuperNodes claim.
(The loopback FedProx deployment test runs a whole federation this way.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fedllm.errors import FedLLMError
from fedllm.testing import call, component
from fedllm_flower import grid_backend
from fedllm_flower.nodes_dataset import NodesConfig, NodesDataset, node_dataset


def _ctx(backend):
    return SimpleNamespace(backend=backend)


def _load(monkeypatch, claims, **opts):
    """As if SuperNodes started with these --client-id lists answered the client query of
    the flower backend (the query itself runs in the deployment tests)."""
    monkeypatch.setattr(grid_backend, "discover", lambda grid, want, wait: claims)
    backend = component("backend", "flower", wait_nodes=1, **opts)
    backend.obj.use_grid(object())
    return call(NodesDataset(NodesConfig()), "fedllm_load_dataset", ctx=_ctx(backend))


def test_clients_are_the_ids_the_nodes_claim_sorted_and_no_samples(monkeypatch):
    ds = _load(monkeypatch, {9: ["zoe", "amy"], 4: ["bob"]}, num_nodes=2)
    assert ds.client_ids == ["amy", "bob", "zoe"]
    assert len(ds.train) == 0 and ds.heldout is None


def test_a_node_without_client_ids_is_a_clear_error(monkeypatch):
    with pytest.raises(FedLLMError, match=r"1 of 2 claim none: start every `fedllm join` "
                       r"with --client-id"):
        _load(monkeypatch, {1: ["amy"], 2: []}, num_nodes=2)


def test_outside_fedllm_serve_it_says_what_to_do():
    with pytest.raises(FedLLMError, match=r"SuperNodes of `fedllm serve`"):
        call(NodesDataset(NodesConfig()), "fedllm_load_dataset",
             ctx=_ctx(component("backend", "in-process")))
    with pytest.raises(FedLLMError, match=r"runs only inside `fedllm serve`"):
        call(NodesDataset(NodesConfig()), "fedllm_load_dataset",
             ctx=_ctx(component("backend", "flower")))


def test_nodes_load_the_on_nodes_section():
    assert node_dataset({"name": "flower-nodes", "on_nodes": {"name": "hf", "x": 1}}) == \
        {"name": "hf", "x": 1}
    assert node_dataset({"name": "embedded"}) == {"name": "embedded"}
