"""``dataset: flower-nodes``: the coordinator's clients are the ids its SuperNodes claim.
(The loopback FedProx deployment test runs a whole federation this way.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fedllm.errors import FedLLMError
from fedllm_flower import grid_backend
from fedllm_flower.nodes_dataset import NodesConfig, NodesDataset, node_dataset


def _ctx(**backend_options):
    return SimpleNamespace(config=SimpleNamespace(runtime=SimpleNamespace(
        backend_options={"wait_nodes": 1, **backend_options})))


def _load(monkeypatch, claims, **opts):
    """As if SuperNodes started with these --client-id lists answered the client query
    (the query itself runs in the deployment tests)."""
    monkeypatch.setattr(grid_backend, "CURRENT_GRID", object())
    monkeypatch.setattr(grid_backend, "discover", lambda grid, want, wait: claims)
    return NodesDataset(NodesConfig()).fedllm_load_dataset(ctx=_ctx(**opts))


def test_clients_are_the_ids_the_nodes_claim_sorted_and_no_samples(monkeypatch):
    ds = _load(monkeypatch, {9: ["zoe", "amy"], 4: ["bob"]}, num_nodes=2)
    assert ds.client_ids == ["amy", "bob", "zoe"]
    assert len(ds.train) == 0 and ds.heldout is None


def test_a_node_without_client_ids_is_a_clear_error(monkeypatch):
    with pytest.raises(FedLLMError, match=r"1 of 2 claim none: start every `fedllm join` "
                       r"with --client-id"):
        _load(monkeypatch, {1: ["amy"], 2: []}, num_nodes=2)


def test_outside_fedllm_serve_it_says_what_to_do(monkeypatch):
    monkeypatch.setattr(grid_backend, "CURRENT_GRID", None)
    with pytest.raises(FedLLMError, match=r"SuperNodes of `fedllm serve`"):
        NodesDataset(NodesConfig()).fedllm_load_dataset(ctx=_ctx())


def test_nodes_load_the_on_nodes_section():
    assert node_dataset({"name": "flower-nodes", "on_nodes": {"name": "hf", "x": 1}}) == \
        {"name": "hf", "x": 1}
    assert node_dataset({"name": "embedded"}) == {"name": "embedded"}
