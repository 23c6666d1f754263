"""Federated offsite-tuning: the emulator drops a uniform share of the middle blocks, clients
load only the emulator, and the server plugs the trained adapter into the full model (what it
evaluates and saves; `fedllm eval` of the saved adapter scores the same)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedllm_peft.offsite import EMULATOR_FILE, plan


@pytest.fixture(scope="module")
def tiny8(fedllm_home):
    from fedllm.tiny import TINY_VERSION, ensure_tiny

    return ensure_tiny(fedllm_home / "models" / f"tiny8-{TINY_VERSION}", num_hidden_layers=8)


@pytest.mark.parametrize("drop, kept_middle", [(0.2, 3), (0.5, 2), (0.75, 1)])
def test_the_emulator_drops_a_uniform_share_of_the_middle(drop, kept_middle):
    kept, adapter = plan(8, 2, drop)
    assert adapter == [0, 1, 6, 7]
    middle = [i for i in kept if i not in adapter]
    assert len(middle) == kept_middle and all(2 <= i < 6 for i in middle)
    assert plan(12, 1, 0.5)[0] == [0, 2, 4, 6, 8, 10, 11]  # evenly spread


def test_the_check_refuses_what_cannot_be_emulated(tiny8):
    from fedllm.config import resolve
    from fedllm.context import build_context, prepare
    from fedllm.errors import ConfigError

    cfg = resolve({"model": {"name_or_path": str(tiny8)},
                   "peft": {"name": "offsite", "adapter_layers": 4}})
    with pytest.raises(ConfigError, match="peft.adapter_layers: 4"):
        prepare(build_context(cfg), load_data=False)
    cfg = resolve({"model": {"name_or_path": str(tiny8)},
                   "peft": {"name": "offsite", "drop": 0.0}})
    with pytest.raises(ConfigError, match="drops none"):
        prepare(build_context(cfg), load_data=False)


@pytest.fixture(scope="module")
def run(tiny8, tmp_path_factory):
    from fedllm.testing import run_quick

    return run_quick(tmp_path_factory.mktemp("ot"), f"model.name_or_path={tiny8}",
                     "peft.name=offsite", "peft.drop=0.5", "eval_every=1",
                     "evaluators=[{name: heldout-loss, max_samples_per_client: 2}]")


def test_clients_load_only_the_emulator(run, monkeypatch):
    """A client process (as a Flower node builds it) never opens the full model's weights."""
    import transformers

    from fedllm.backends import run_client
    from fedllm.context import client_context
    from fedllm.messages import ClientInstruction

    opened = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, path, *a, **kw):
        opened.append(str(path))
        return real(cls, path, *a, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    ctx = client_context(run.resolved)
    emulator = json.loads((Path(opened[0]) / EMULATOR_FILE).read_text())
    assert len(opened) == 1 and emulator["kept"] == [0, 1, 3, 5, 6, 7]
    assert ctx.model.get_base_model().config.num_hidden_layers == 6
    ins = ClientInstruction(cohort="global", round=0, client_id=ctx.dataset.client_ids[0],
                            params=ctx.get_params(), lr=1e-3, seed=1)
    up = run_client(ctx, ins)
    assert set(up.params) == set(ctx.trainable) and len(opened) == 1


def test_the_server_plugs_the_adapter_into_the_full_model(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = run.run_dir.path / "adapter"
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LN_TUNING" and cfg["base_model_name_or_path"] == \
        run.cfg.model.name_or_path
    assert cfg["target_modules"] == [f"model.layers.{i}" for i in (0, 1, 6, 7)]
    full = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(
        run.cfg.model.name_or_path), str(path))
    theirs = dict(full.named_parameters())
    glob = run.globals["global"]
    emulated_last = "base_model.model.model.layers.5.ln_tuning_layers.default.mlp.up_proj.weight"
    plugged = "base_model.model.model.layers.7.ln_tuning_layers.default.mlp.up_proj.weight"
    assert torch.equal(theirs[plugged], glob[emulated_last])  # emulator block 5 = full block 7
    assert len(glob) == sum("ln_tuning_layers" in n for n in theirs)


def test_fedllm_eval_of_the_saved_adapter_scores_what_the_run_scored(run):
    from fedllm.cli.evaluate import evaluate_target

    res = evaluate_target(run.run_dir.path / "adapter", evaluators=["heldout-loss"],
                          overrides=["dataset.name=embedded",
                                     "heldout-loss.max_samples_per_client=2"])
    final = run.history[-1]["eval"]["global"]["heldout-loss"]["loss"]
    assert res["global"]["heldout-loss"]["loss"] == pytest.approx(final, rel=1e-5)
    assert final < run.history[0]["eval"]["global"]["heldout-loss"]["loss"]  # it learned


def test_the_emulator_keeps_the_full_models_blocks(run, tiny8):
    from safetensors.torch import load_file

    from fedllm.paths import fedllm_home

    infos = {p: json.loads((p / EMULATOR_FILE).read_text())
             for p in (fedllm_home() / "emulators").iterdir()}
    (em,) = [p for p, i in infos.items()
             if i["source"] == str(tiny8) and i["kept"] == [0, 1, 3, 5, 6, 7]]
    full = load_file(str(tiny8 / "model.safetensors"))
    emu = load_file(str(em / "model.safetensors"))
    for e, f in enumerate([0, 1, 3, 5, 6, 7]):
        k = "model.layers.{}.self_attn.q_proj.weight"
        assert torch.equal(emu[k.format(e)], full[k.format(f)])
    assert not any(k.startswith("model.layers.6.") for k in emu)
