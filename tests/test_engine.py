"""End-to-end runs of the engine on the embedded default."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fedllm.engine import Engine
from tests.helpers import run_quick


def adapter(run_dir, sub="adapter"):
    return load_file(str(run_dir / sub / "adapter_model.safetensors"))


def test_run_writes_a_complete_run_directory(tmp_path):
    eng = run_quick(tmp_path, "rounds=3", "train.local_steps=3")
    rd = eng.run_dir.path
    records = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3]
    r0 = records[0]
    sampled = r0["cohorts"]["global"]["sampled"]
    assert len(sampled) == 2
    for cid in sampled:
        c = r0["cohorts"]["global"]["clients"][cid]
        assert c["num_samples"] > 0 and c["train_loss"] > 0 and c["local_steps"] == 3
    assert r0["bytes_down"] == r0["bytes_up"] == 2 * sum(
        p.numel() * 4 for p in eng.ctx.trainable.values())
    assert r0["wall_s"] > 0 and r0["peak_rss_mb"] > 0
    assert "heldout-loss" in records[-1]["eval"]["global"]
    assert records[-1]["eval"]["global"]["heldout-loss"]["loss"] > 0
    assert (rd / "config.yaml").is_file()
    assert len(eng.run_dir.checkpoints()) == 2  # keep_checkpoints=2: one to fall back to


def test_final_adapter_loads_with_peft(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fedllm.tiny import tiny_path

    eng = run_quick(tmp_path)
    base = AutoModelForCausalLM.from_pretrained(tiny_path())
    model = PeftModel.from_pretrained(base, str(eng.run_dir.path / "adapter"))
    ours = eng.globals["global"]
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert set(loaded) == set(ours)
    for n, p in loaded.items():
        assert torch.equal(p.detach(), ours[n])
    # the adapter names its base as the user did (not this machine's cache path) and carries
    # the tokenizer it was trained with, chat template included
    from transformers import AutoTokenizer

    saved = eng.run_dir.path / "adapter"
    conf = json.loads((saved / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == "tiny" and conf["revision"] is None
    tok = AutoTokenizer.from_pretrained(str(saved))
    assert tok.chat_template == eng.ctx.tokenizer.chat_template is not None
    assert tok("hello world")["input_ids"] == eng.ctx.tokenizer("hello world")["input_ids"]
    # and a model card saying what was run and how it scored, in place of peft's blank one
    card = (saved / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "peft" and "fedllm-fedavg" in front["tags"]
    loss = eng.history[-1]["eval"]["global"]["heldout-loss"]["loss"]
    (metric,) = [m for m in front["model-index"][0]["results"][0]["metrics"]
                 if m["type"] == "heldout-loss/loss"]
    assert metric["value"] == pytest.approx(loss, abs=1e-6)
    assert f"{eng.cfg.rounds} rounds" in card and "## Training configuration" in card


def test_training_lowers_the_loss(tmp_path):
    eng = run_quick(tmp_path, "rounds=4", "train.local_steps=6", "train.lr=1e-2",
                    "sampler.name=all", "eval_every=1")
    losses = [r["eval"]["global"]["heldout-loss"]["loss"] for r in eng.history]
    assert losses[-1] < losses[0] - 0.2


def test_resume_equals_uninterrupted(tmp_path):
    full = run_quick(tmp_path, "rounds=4", name="full")
    part = run_quick(tmp_path, "rounds=4", name="part", until=2)
    rd = part.run_dir.path
    assert not (rd / "adapter").exists()
    assert len(part.run_dir.metrics()) == 2
    Engine.resume(rd, progress=False).run()
    a, b = adapter(full.run_dir.path), adapter(rd)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["round"] for r in part.run_dir.metrics()] == [1, 2, 3, 4]


def test_same_seed_same_result_and_seed_matters(tmp_path):
    a = adapter(run_quick(tmp_path, name="a").run_dir.path)
    b = adapter(run_quick(tmp_path, name="b").run_dir.path)
    c = adapter(run_quick(tmp_path, "seed=1", name="c").run_dir.path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_local_trains_only_the_chosen_client(tmp_path):
    eng = run_quick(tmp_path, "algorithm.name=local", "algorithm.client=capitals")
    for r in eng.history:
        assert r["cohorts"]["global"]["sampled"] == ["capitals"]
    eng = run_quick(tmp_path, "algorithm.name=local", "algorithm.client=2", name="idx")
    assert eng.history[0]["cohorts"]["global"]["sampled"] == [eng.ctx.dataset.client_ids[2]]


def test_uniform_sampler_is_the_reference_rule(tmp_path):
    import random

    eng = run_quick(tmp_path, "rounds=3", "clients_per_round=3")
    ids = eng.ctx.dataset.client_ids
    for r in eng.history:
        random.seed(r["round"] - 1)
        expect = [ids[i] for i in sorted(random.sample(range(len(ids)), 3))]
        assert r["cohorts"]["global"]["sampled"] == expect


def test_memory_does_not_hold_every_client(tmp_path):
    """The engine keeps a row index per client, not per-client tensors or lists."""
    eng = run_quick(tmp_path)
    assert set(eng.ctx.rows["train"]) == set(eng.ctx.dataset.client_ids)
    assert eng.ctx.encoded["train"].cache_files, "encoded data must be memory-mapped from disk"
