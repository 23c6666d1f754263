"""Codecs in runs: what travels shrinks as promised, the records say so, nothing changes
without codecs (or with lossless ones), the chain is checked, and Flower carries encoded
messages unchanged (its records, and a flower-sim run equal to the in-process one)."""

from __future__ import annotations

import json

import pytest
import torch

from fedllm.errors import ConfigError
from fedllm.testing import run_quick

FAST = ["rounds=2", "evaluators=[]"]


def _codecs(*items) -> str:
    return f"codecs={json.dumps(list(items))}"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run_quick(tmp_path_factory.mktemp("plain"), *FAST, name="plain")


def test_without_codecs_records_and_bytes_are_as_before(plain):
    for rec in plain.history:
        assert "codec" not in rec
        assert rec["bytes_up"] == rec["bytes_down"] == 4 * sum(
            v.numel() for v in plain.globals["global"].values()) * plain.cfg.clients_per_round
        assert not any(k.startswith("codec/") for c in rec["cohorts"]["global"]["clients"].values()
                       for k in c)


def test_a_lossless_chain_trains_the_same_adapter(plain, tmp_path):
    eng = run_quick(tmp_path, *FAST, _codecs({"name": "deflate"}, {"name": "zstd"}))
    for k, v in plain.globals["global"].items():
        assert torch.equal(eng.globals["global"][k], v), k
    rec = eng.history[-1]["codec"]
    assert rec["up"]["rel_error"] == rec["down"]["rel_error"] == 0.0
    assert rec["up"]["raw_bytes"] == plain.history[-1]["bytes_up"]


def test_int8_sends_a_quarter_and_records_the_error(plain, tmp_path):
    eng = run_quick(tmp_path, *FAST, _codecs({"name": "int8"}))
    for rec in eng.history:
        for d in ("down", "up"):
            c = rec["codec"][d]
            assert c["bytes"] == rec[f"bytes_{d}"] <= 0.27 * c["raw_bytes"]
            assert 0 < c["rel_error"] < 0.01 and c["messages"] == eng.cfg.clients_per_round
        for client in rec["cohorts"]["global"]["clients"].values():
            assert 0 < client["codec/rel_error"] < 0.01
    a, b = eng.globals["global"], plain.globals["global"]  # close to, not equal to, plain
    diff = sum(float((a[k] - b[k]).pow(2).sum()) for k in b) ** 0.5
    assert 0 < diff < 0.02 * sum(float(v.pow(2).sum()) for v in b.values()) ** 0.5


def test_topk_sends_a_tenth_and_keeps_the_residual_per_client(tmp_path):
    eng = run_quick(tmp_path, *FAST, _codecs({"name": "topk", "fraction": 0.1}))
    rec = eng.history[-1]
    assert rec["codec"]["up"]["bytes"] <= 0.12 * rec["codec"]["up"]["raw_bytes"]
    assert rec["codec"]["down"]["ratio"] == 1.0  # downloads travel whole
    sampled = rec["cohorts"]["global"]["sampled"]
    store = eng.ctx.client_state
    for cid in sampled:
        residual = store.load("global/codec-topk", cid)
        assert residual and set(residual) == set(eng.ctx.trainable)


def test_the_chain_is_checked_before_the_run(tmp_path):
    from fedllm.config import resolve
    from fedllm.context import build_context, prepare

    def problems(*items, **extra):
        data = {"codecs": list(items), **extra}
        with pytest.raises(ConfigError) as e:
            prepare(build_context(resolve(data)), load_data=False)
        return str(e.value)

    assert "put lossless codecs last" in problems({"name": "deflate"}, {"name": "int8"})
    assert "move it first" in problems({"name": "int8"}, {"name": "topk"})
    assert "secure_aggregation" in problems(
        {"name": "int8"}, runtime={"backend": "flower-sim",
                                   "backend_options": {"secure_aggregation": True}})
    with pytest.raises(ConfigError, match="direction"):
        resolve({"codecs": [{"name": "topk", "direction": "down"}]})


def test_zstd_without_its_package_is_a_config_error(monkeypatch):
    import builtins

    from fedllm.config import resolve
    from fedllm.context import build_context, prepare

    real = builtins.__import__

    def no_zstd(name, *a, **kw):
        if name == "zstandard":
            raise ImportError("No module named 'zstandard'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(ConfigError, match=r"pip install 'fedllm-codecs\[zstd\]'"):
        prepare(build_context(resolve({"codecs": [{"name": "zstd"}]})), load_data=False)


def test_flower_records_carry_encoded_messages_unchanged(fedllm_home, tmp_path):
    """The encoded instruction and update go through fedllm_flower's own codec as they are
    (int8 arrays, JSON metadata), and decode to what the in-process path decodes."""
    pytest.importorskip("flwr")
    from rich.console import Console

    from fedllm.backends import run_client
    from fedllm.codecs import Wire
    from fedllm.config import apply_override, resolve
    from fedllm.context import client_context
    from fedllm.messages import ClientInstruction, ClientUpdate
    from fedllm.state import ClientStateStore
    from fedllm.testing import QUICK
    from fedllm_flower.codec import (
        decode_instruction,
        decode_update,
        encode_instruction,
        encode_update,
        wire_bytes,
    )

    data: dict = {}
    for o in [*QUICK, "evaluators=[]", _codecs({"name": "int8"})]:
        apply_override(data, o)
    ctx = client_context(resolve(data), console=Console(stderr=True, quiet=True))
    ctx.client_state = ClientStateStore(tmp_path / "cs")
    glob = ctx.get_params()
    wire = Wire(ctx, "global", 0, glob)
    ins = wire.down(ClientInstruction("global", 0, ctx.dataset.client_ids[0], glob, 1e-3, 5))
    assert all(v.dtype in (torch.int8, torch.float32) for v in ins.params.values())
    got, _ = decode_instruction(encode_instruction(ins, {}))
    assert got.extras == json.loads(json.dumps(ins.extras))
    up = run_client(ctx, got)  # the node's side: decode, train, encode
    rd = encode_update(up)
    back = wire.up(decode_update(rd))
    direct = wire.up(up)
    assert all(torch.equal(back.params[k], direct.params[k]) for k in glob)
    # the same trained adapter sent as float32 (Flower stores identical chunks once, so
    # compare trained tensors, not the zero-initialised LoRA B)
    plain = encode_update(ClientUpdate(up.client_id, up.num_samples, back.params, {}, {}))
    assert wire_bytes(rd) < 0.45 * wire_bytes(plain)  # arrays' headers weigh on a tiny adapter


@pytest.mark.slow
def test_flower_sim_with_codecs_matches_in_process(tmp_path):
    pytest.importorskip("ray")
    data = {c: [{"instruction": f"{c} {i}?", "response": f"{i} {c}."} for i in range(6)]
            for c in ("amy", "bob")}
    path = tmp_path / "fed.json"
    path.write_text(json.dumps(data))
    common = ["rounds=2", "clients_per_round=2", "evaluators=[]", "train.local_steps=2",
              "train.batch_size=2", "dataset.name=fedllm-bench-json", f"dataset.path={path}",
              "dataset.heldout=0", _codecs({"name": "topk"}, {"name": "int8", "direction": "down"},
                                           {"name": "zstd"})]
    ref = run_quick(tmp_path, *common, name="ref")
    sim = run_quick(tmp_path, *common, "runtime.backend=flower-sim", name="sim")
    for k, v in ref.globals["global"].items():
        assert torch.allclose(sim.globals["global"][k], v, atol=1e-5), k
    last = sim.history[-1]
    assert last["codec"]["up"]["bytes"] == ref.history[-1]["codec"]["up"]["bytes"]
    assert last["wire_bytes_up"] < 0.2 * last["codec"]["up"]["raw_bytes"]
