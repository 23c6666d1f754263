"""The tasks' assumptions hold for every peft method: DPO's reference is the base with the
adapter switched off (for prompt learning too, whose outputs are longer than the input), and
evaluators that read logits by position see the real tokens' positions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fedllm.plugins import installed_names
from fedllm.testing import run_quick

SMALL = {"prompt-tuning": ["peft.num_virtual_tokens=4"],
         "p-tuning": ["peft.num_virtual_tokens=4", "peft.encoder_hidden_size=32"],
         "prefix-tuning": ["peft.num_virtual_tokens=4"], "vera": ["peft.r=32"],
         "fourierft": ["peft.n_frequency=64"]}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    data = {f"judge{c}": [{"prompt": f"Name thing {c}{j}.", "chosen": f"Thing {c}{j} is nice.",
                           "rejected": "No."} for j in range(4)] for c in range(2)}
    path = tmp_path_factory.mktemp("pairs") / "pairs.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("peft", [p for p in installed_names("peft") if p != "offsite"])
def test_dpo_trains_every_peft_method_against_the_adapter_free_reference(peft, pairs,
                                                                         tmp_path):
    eng = run_quick(tmp_path, f"peft.name={peft}", *SMALL.get(peft, []), "task.name=dpo",
                    "dataset.name=fedllm-bench-json", f"dataset.path={pairs}",
                    "dataset.heldout=0", "evaluators=[]", "rounds=2", "clients_per_round=1",
                    "train.local_steps=1", "train.batch_size=2", "checkpoint_every=0")
    first, last = (next(iter(r["cohorts"]["global"]["clients"].values())) for r in
                   (eng.history[0], eng.history[-1]))
    for c in (first, last):
        assert math.isfinite(c["train_loss"]) and math.isfinite(c["reward_margin"])
    if peft in ("lora", "dora", "ia3", "loha", "lokr", "vera", "ln-tuning", "oft"):
        # these start as the identity: before its first step the policy is the reference,
        # so the first loss is log 2 (prompt learning and FourierFT start elsewhere)
        assert first["train_loss"] == pytest.approx(math.log(2), abs=1e-4)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("peft", ["prompt-tuning", "p-tuning"])
def test_mmlu_scores_the_real_tokens_under_virtual_tokens(peft, run_context):
    """continuation_logprobs reads logits by position; the virtual tokens come first."""
    from fedllm.config import apply_override, resolve
    from fedllm.context import client_context
    from fedllm.testing import QUICK
    from fedllm_evaluators.mmlu import continuation_logprobs

    data: dict = {}
    for o in [*QUICK, "evaluators=[]", f"peft.name={peft}", *SMALL[peft]]:
        apply_override(data, o)
    ctx = client_context(resolve(data))
    ctx.model.eval()
    tok = ctx.tokenizer
    prompts, conts = ["Q: 1+1? A:", "Colour:"], [[" 2", " 3"], [" red", " blue"]]
    got = continuation_logprobs(ctx.model, tok, prompts, conts, batch_size=4)
    for pi, (p, cs) in enumerate(zip(prompts, conts)):  # one sequence at a time, by hand
        for ci, c in enumerate(cs):
            p_ids = tok(p)["input_ids"]
            ids = tok(p + c)["input_ids"]
            with torch.no_grad():
                logits = ctx.model(input_ids=torch.tensor([ids])).logits[0, -len(ids):]
            lp = torch.log_softmax(logits.float(), -1)
            want = sum(float(lp[j - 1, ids[j]]) for j in range(len(p_ids), len(ids)))
            if len(ids) - len(p_ids) == 1:
                assert got[pi][ci] == pytest.approx(want, abs=1e-4)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_dpo_with_offsite_tuning_is_evaluated_on_the_full_model(pairs, tmp_path, fedllm_home):
    """Clients score DPO on the emulator, the server on the full model with the adapter."""
    from fedllm.tiny import TINY_VERSION, ensure_tiny

    tiny4 = ensure_tiny(fedllm_home / "models" / f"tiny4-{TINY_VERSION}", num_hidden_layers=4)
    eng = run_quick(tmp_path, f"model.name_or_path={tiny4}", "peft.name=offsite",
                    "peft.adapter_layers=1", "peft.drop=0.5", "task.name=dpo",
                    "dataset.name=fedllm-bench-json", f"dataset.path={pairs}",
                    "dataset.heldout=1", "rounds=2", "eval_every=1")
    losses = [r["eval"]["global"]["heldout-loss"]["loss"] for r in eng.history]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
