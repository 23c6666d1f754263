"""A SuperNode's per-client state survives a coordinator crash and ``serve --resume``."""

from __future__ import annotations

import torch

from fedllm_flower.client_app import node_store


def test_node_keeps_client_state_back_to_the_coordinators_checkpoint(tmp_path):
    run = "/runs/dep"
    # round r runs with the coordinator's last checkpoint at r - 1 (checkpoint_every=1)
    for r in range(3):
        store = node_store(tmp_path, run, checkpointed=r - 1)
        store.forget_after("global", "a", r)
        store.save("global", "a", r, {"c": torch.full((2,), float(r))})
    # the coordinator died before checkpointing round 2; it resumes from round 1's checkpoint
    # and re-runs round 2: the client must start from its round-1 state, not from scratch
    store = node_store(tmp_path, run, checkpointed=1)
    store.forget_after("global", "a", 2)
    assert torch.equal(store.load("global", "a")["c"], torch.full((2,), 1.0))
    # another run's state lives apart
    assert node_store(tmp_path, "/runs/other", checkpointed=-1).load("global", "a") is None
