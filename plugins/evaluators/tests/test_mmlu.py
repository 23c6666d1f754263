"""MMLU log-likelihood scoring on a fixture in the real cais/mmlu layout."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from evalkit import build, evaluate, report_file

from fedllm.errors import DataError
from fedllm.testing import call
from fedllm_evaluators.mmlu import continuation_logprobs

SUBJECTS = ["abstract_algebra", "anatomy", "astronomy"]


def write_mmlu(path, n_per_subject=3, planted=True, offset=0):
    """cais/mmlu columns: question, subject, choices (4 strings), answer (index)."""
    rows = []
    for s_i, subject in enumerate(SUBJECTS):
        for q in range(n_per_subject):
            ans = (q + s_i + offset) % 4
            letter = "ABCD"[ans]
            text = f"question {q} about {subject.replace('_', ' ')}?"
            if planted:
                text += " " + " ".join([letter] * 40)  # the answer, planted in the prompt
            rows.append({"question": text, "subject": subject,
                         "choices": ["one", "two", "three", "four"], "answer": ans})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class CacheLM(torch.nn.Module):
    """A real (if simple) causal LM: the next token is predicted in proportion to how often it
    occurred so far in the attended context. Log-likelihood scoring must find a planted answer
    with it; a wrong position, padding or continuation alignment would not."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids, attention_mask):
        onehot = torch.nn.functional.one_hot(input_ids, self.vocab).float()
        counts = (onehot * attention_mask[..., None]).cumsum(dim=1)
        return SimpleNamespace(logits=torch.log1p(counts))


def test_planted_answers_score_100_percent(ctx, tmp_path):
    test, dev = tmp_path / "test.jsonl", tmp_path / "dev.jsonl"
    rows = write_mmlu(test)
    write_mmlu(dev, n_per_subject=5, planted=False, offset=1)
    lm = CacheLM(len(ctx.tokenizer))
    ev = build("evaluator", "mmlu", path=str(test), dev_path=str(dev), shots=[0, 2],
               batch_size=5)
    out = call(ev, "fedllm_evaluate", ctx=ctx, model=lm, cohort="global", round=0)
    assert out["n"] == len(rows) == 9
    assert out["acc_0shot"] == 1.0 and out["acc_2shot"] == 1.0
    assert out["subjects_0shot"] == {s: 1.0 for s in SUBJECTS}
    report = json.loads(report_file(ctx.run_dir, "mmlu").read_text())
    assert [i["pred_0shot"] for i in report["items"]] == ["ABCD"[r["answer"]] for r in rows]


def test_unplanted_answers_are_not_all_right(ctx, tmp_path):
    """The same model on questions without the plant cannot reach 100%: the score measures
    the plant, not a constant."""
    test = tmp_path / "test.jsonl"
    write_mmlu(test, planted=False)
    ev = build("evaluator", "mmlu", path=str(test), shots=[0])
    out = call(ev, "fedllm_evaluate", ctx=ctx, model=CacheLM(len(ctx.tokenizer)), cohort="global",
                             round=0)
    assert out["acc_0shot"] < 1.0


def test_multi_token_continuations_match_full_sequence_scoring(ctx):
    """The fallback path (continuations of different lengths) equals summing token
    log-probabilities of prompt+continuation computed directly."""
    tok, model = ctx.tokenizer, ctx.model
    prompt, conts = "Answer:", [" yes", " no way"]
    got = continuation_logprobs(model, tok, [prompt], [conts])[0]
    for c, value in zip(conts, got):
        p_ids = tok(prompt)["input_ids"]
        ids = tok(prompt + c)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        direct = sum(float(logp[i - 1, ids[i]]) for i in range(len(p_ids), len(ids)))
        assert value == pytest.approx(direct, abs=1e-4)


def test_tiny_model_end_to_end(ctx, tmp_path):
    test = tmp_path / "test.jsonl"
    write_mmlu(test, planted=False)
    out, report = evaluate(ctx, "mmlu", path=str(test), shots=[0], max_samples=4)
    assert out["n"] == 4 and 0.0 <= out["acc_0shot"] <= 1.0
    assert len(report["items"]) == 4 and all(len(i["loglik_0shot"]) == 4 for i in report["items"])


def test_bad_answer_index_is_a_clear_error(ctx, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "subject": "x", "choices": ["a", "b"],
                               "answer": 7}) + "\n")
    with pytest.raises(DataError, match=r"mmlu.path: answer 7 is out of range for 2 choices"):
        evaluate(ctx, "mmlu", path=str(bad), shots=[0])
    with pytest.raises(DataError, match=r"mmlu.dev_path: shots \[0, 5\] need"):
        evaluate(ctx, "mmlu", path=str(bad))
