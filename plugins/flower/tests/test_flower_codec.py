import pytest
import torch

from fedllm.errors import FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate
from fedllm_flower.codec import (
    decode_instruction,
    decode_update,
    encode_instruction,
    encode_update,
    instruction_from_bytes,
    instruction_to_bytes,
    wire_bytes,
)
from fedllm_flower.grid_backend import assign


def test_instruction_and_update_round_trip_bit_exact():
    g = torch.Generator().manual_seed(0)
    params = {"layer.lora_A.weight": torch.randn(4, 8, generator=g),
              "layer.lora_B.weight": torch.randn(8, 4, generator=g)}
    c = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}
    ins = ClientInstruction("global", 3, "client/1", params, 1e-3, 42,
                            {"scaffold_c": c, "mu": 0.01, "tags": ["a", 1]})
    got, cfg = decode_instruction(encode_instruction(ins, {"rounds": 2}))
    assert cfg == {"rounds": 2}
    assert (got.cohort, got.round, got.client_id, got.lr, got.seed) == ("global", 3, "client/1",
                                                                         1e-3, 42)
    assert all(torch.equal(got.params[k], params[k]) for k in params)
    assert all(torch.equal(got.extras["scaffold_c"][k], c[k]) for k in c)
    assert got.extras["mu"] == 0.01 and got.extras["tags"] == ["a", 1]

    up = ClientUpdate("client/1", 17, params, {"train_loss": 2.5}, {"scaffold_dc": c})
    rd = encode_update(up)
    back = decode_update(rd)
    assert back.num_samples == 17 and back.metrics == {"train_loss": 2.5}
    assert all(torch.equal(back.extras["scaffold_dc"][k], c[k]) for k in c)
    # serialised size covers the tensor payload (2 x 32 floats x 4 bytes, twice)
    assert wire_bytes(rd) >= 4 * 32 * 4

    # the single-blob form (a bytes value in a SecAgg+ round's FitIns) is as exact
    got = instruction_from_bytes(instruction_to_bytes(ins))
    assert (got.cohort, got.round, got.client_id, got.lr, got.seed) == ("global", 3, "client/1",
                                                                         1e-3, 42)
    assert got.params.keys() == params.keys()
    assert all(torch.equal(got.params[k], params[k]) for k in params)
    assert all(torch.equal(got.extras["scaffold_c"][k], c[k]) for k in c)
    assert got.extras["mu"] == 0.01 and got.extras["tags"] == ["a", 1]


def test_assign_clients_to_nodes():
    # claimed clients go to their node; the rest round-robin over nodes that claim none
    assert assign(["a", "b", "c"], {5: ["b"], 1: [], 9: []}) == {"b": 5, "a": 1, "c": 9}
    with pytest.raises(FedLLMError, match="claimed by two SuperNodes"):
        assign(["a"], {1: ["a"], 2: ["a"]})
    with pytest.raises(FedLLMError, match=r"no connected SuperNode holds client\(s\) \['c'\]"):
        assign(["a", "c"], {1: ["a"]})
