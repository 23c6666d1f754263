"""The dpo task: trl's loss against the closed form, learning, and a full FedDPO run."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import run_quick

PAIRS = [
    ("Name a colour.", "Blue is a fine colour.", "No."),
    ("Say hello.", "Hello, nice to meet you!", "No."),
    ("Count to three.", "One, two, three.", "No."),
    ("What is 2+2?", "Two plus two is four.", "No."),
    ("Greet me.", "Good morning to you!", "No."),
    ("Name a fruit.", "An apple is a fruit.", "No."),
]


def write_pairs(tmp_path, clients=3, per_client=4):
    data = {}
    for c in range(clients):
        data[f"judge{c}"] = [
            {"prompt": p, "chosen": ch, "rejected": rj}
            for p, ch, rj in (PAIRS[(c + j) % len(PAIRS)] for j in range(per_client))]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(data))
    return path


def dpo_args(path, *extra):
    return ("task.name=dpo", "dataset.name=fedllm-bench-json", f"dataset.path={path}",
            "evaluators=[]", *extra)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    return run_quick(tmp, *dpo_args(write_pairs(tmp)), until=0)


def completion_logps(model, batch):
    """Summed log-probabilities of the completion tokens, from the plain forward's logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tok = logp.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (tok * batch["completion_mask"][:, 1:]).sum(-1)


def client_batch(ctx, cid="judge0"):
    data = ctx.client_data(cid).to_list()
    return ctx.call("fedllm_collate", examples=data)


def test_loss_matches_closed_form_and_is_ln2_with_zero_adapter(engine):
    ctx, model = engine.ctx, engine.ctx.model
    batch = client_batch(ctx)
    n = batch["input_ids"].shape[0] // 2
    torch.manual_seed(1)
    with torch.no_grad():
        for p in ctx.trainable.values():
            p.copy_(torch.randn_like(p) * 0.3)
    model.train()
    loss, metrics = ctx.call("fedllm_loss", model=model, batch=batch)
    assert loss.requires_grad
    with torch.no_grad():
        pol = completion_logps(model, batch)
        with model.disable_adapter():
            ref = completion_logps(model, batch)
    beta = 0.1
    chosen = beta * (pol[:n] - ref[:n])
    rejected = beta * (pol[n:] - ref[n:])
    expected = -F.logsigmoid(chosen - rejected).mean()
    assert abs(chosen - rejected).max() > 1e-3  # the check is not trivially at ln 2
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5)
    assert metrics["reward_margin"] == pytest.approx(float((chosen - rejected).mean()), abs=1e-5)
    assert metrics["reward_accuracy"] == pytest.approx(float((chosen > rejected).float().mean()))

    with torch.no_grad():
        for p in ctx.trainable.values():
            p.zero_()
    loss, metrics = ctx.call("fedllm_loss", model=model, batch=batch)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    model.eval()


def test_few_steps_grow_the_margin_and_leave_the_reference_alone(engine):
    ctx, model = engine.ctx, engine.ctx.model
    ctx.set_params(engine.globals["global"])  # LoRA's initial adapter: B = 0
    batch = client_batch(ctx, "judge1")
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), model.disable_adapter():
        ref_before = completion_logps(model, batch)
    opt = torch.optim.AdamW(ctx.trainable.values(), lr=1e-2)
    model.train()
    margins, losses = [], []
    for _ in range(8):
        loss, m = ctx.call("fedllm_loss", model=model, batch=batch)
        margins.append(m["reward_margin"])
        losses.append(float(loss))
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    assert margins[0] == pytest.approx(0.0, abs=1e-6)
    assert margins[-1] > margins[0] + 0.05
    assert losses[-1] < math.log(2) - 0.02
    with torch.no_grad(), model.disable_adapter():
        ref_after = completion_logps(model, batch)
    assert torch.equal(ref_before, ref_after)  # the base (the reference) never moves
    assert sum(p.numel() for p in model.parameters()) == n_params  # no second model copy


def test_encode_truncates_answers_and_rejects_bad_samples(tmp_path):
    from fedllm.errors import DataError

    long = "x" * 400
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a": [{"prompt": "hi", "chosen": long, "rejected": "no"},
                                      {"prompt": "yo", "chosen": "sure", "rejected": "no"}]}))
    eng = run_quick(tmp_path, *dpo_args(path, "task.max_length=200"), until=0)
    rows = eng.ctx.encoded["train"].to_list()
    assert len(rows) == 2
    assert len(rows[0]["prompt_ids"]) + len(rows[0]["chosen_ids"]) == 200  # cut to fit
    assert rows[0]["rejected_ids"] == eng.ctx.tokenizer("no", add_special_tokens=False)[
        "input_ids"] + [eng.ctx.tokenizer.eos_token_id]  # the short answer is kept whole
    assert rows[1]["chosen_ids"][-1] == eng.ctx.tokenizer.eos_token_id

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": [{"prompt": "hi", "chosen": "", "rejected": "no"}]}))
    with pytest.raises(DataError, match="'chosen'"):
        run_quick(tmp_path, *dpo_args(bad), name="bad", until=0)


def test_feddpo_run_saves_a_loadable_adapter_and_resumes_identically(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from fedllm.engine import Engine
    from fedllm.tiny import ensure_tiny

    path = write_pairs(tmp_path)
    args = dpo_args(path, "train.lr=1e-2", "eval_every=0")
    eng = run_quick(tmp_path, *args, "evaluators=[{name: heldout-loss}]",
                    "dataset.heldout=1", name="full")
    rec = eng.history[-1]
    for stats in rec["cohorts"]["global"]["clients"].values():
        assert {"dpo_loss", "reward_accuracy", "reward_margin"} <= stats.keys()
    lines = (eng.run_dir.path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert "reward_margin" in json.dumps(json.loads(lines[0])["cohorts"])
    assert rec["eval"]["global"]["heldout-loss"]["loss"] > 0  # the evaluator scores DPO pairs

    adapter = eng.run_dir.path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(ensure_tiny())
    loaded = PeftModel.from_pretrained(base, adapter)
    saved = {k: v for k, v in loaded.named_parameters() if "lora_" in k}
    final = eng.globals["global"]
    assert len(saved) == len(final)
    for k, v in final.items():
        assert torch.equal(saved[k], v)
    assert any(v.abs().sum() > 0 for k, v in final.items() if "lora_B" in k)  # it trained

    half = run_quick(tmp_path, *args, "evaluators=[{name: heldout-loss}]",
                     "dataset.heldout=1", name="half", until=1)
    resumed = Engine.resume(half.run_dir.path, progress=False)
    resumed.run()
    for k, v in final.items():
        assert torch.equal(resumed.globals["global"][k], v), k


def _installed(kind, name):
    from fedllm.errors import FedLLMError
    from fedllm.plugins import load

    try:
        load(kind, name)
        return True
    except FedLLMError:
        return False


@pytest.mark.parametrize("algorithm, extra", [("fedprox", ["algorithm.mu=100"]),
                                              ("scaffold", [])])
def test_client_side_algorithms_act_on_the_dpo_loss(tmp_path, algorithm, extra):
    """FedProx's term and SCAFFOLD's correction reach DPO training through the core loop."""
    if not _installed("algorithm", algorithm):
        pytest.skip(f"algorithm {algorithm!r} is not installed")
    path = write_pairs(tmp_path)
    args = dpo_args(path, "train.lr=1e-2", "train.local_steps=3")
    plain = run_quick(tmp_path, *args, name="fedavg")
    other = run_quick(tmp_path, *args, f"algorithm.name={algorithm}", *extra, name=algorithm)
    for rec in other.history:
        for stats in rec["cohorts"]["global"]["clients"].values():
            assert math.isfinite(stats["dpo_loss"]) and "reward_margin" in stats
    a, b = plain.globals["global"], other.globals["global"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    if algorithm == "fedprox":  # a strong proximal pull keeps the adapter near θ_t = 0 (B)
        drift = lambda g: sum(float(v.norm()) for k, v in g.items() if "lora_B" in k)  # noqa: E731
        assert drift(b) < drift(a)
