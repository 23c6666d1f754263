"""Each generation evaluator end to end on the tiny model over >= 3 items of the real files in
shared/data/eval, with the fake judge server where a judge is needed."""

from __future__ import annotations

import pytest
from evalkit import EVAL, evaluate, report_file

from fedllm.errors import FedLLMError
from fedllm_evaluators.advbench import REFUSAL_PHRASES, refuses

GEN = dict(max_new_tokens=6, batch_size=4)
JP = str(EVAL / "judge_prompts.jsonl")


def test_mt_bench(ctx, fake_judge, tmp_path):
    out, report = evaluate(
        ctx, "mt-bench", questions=str(EVAL / "mtbench" / "question.jsonl"),
        references=str(EVAL / "mtbench" / "reference_answer_gpt-4.jsonl"), judge_prompts=JP,
        question_ids=[81, 101, 111], judge=fake_judge.judge_spec(tmp_path), **GEN)
    assert out["mt1"] == 7.0 and out["mt2"] == 7.0 and out["score"] == 7.0
    assert out["n"] == 3 and out["unparsed"] == 0 and out["judgments"] == 6
    assert set(out["categories"]) == {"writing", "reasoning", "math"}
    prompts = fake_judge.user_prompts()[1:]  # [0] is the preflight
    assert len(prompts) == 6
    with_ref = [p for p in prompts if "Reference Answer" in p or "Reference answer" in p]
    assert len(with_ref) == 4  # reasoning and math, both turns; writing has none
    items = report["items"]
    assert [i["judge_prompts"] for i in items][1] == ["single-math-v1",
                                                       "single-math-v1-multi-turn"]
    assert all(len(i["answers"]) == 2 and len(i["judgments"]) == 2 for i in items)
    second_turn = [p for p in prompts if "### User:" in p]  # the multi-turn prompts
    assert len(second_turn) == 3
    for it in items:  # each grades the whole conversation: both questions, both answers
        assert any(all(x in p for x in (*it["turns"], *it["answers"])) for p in second_turn)
    assert report["judge"]["identity"]["model"] == "judge-model"
    assert report["judge"]["prompt_version"].startswith("mt-bench-")


def test_mt_bench_fails_fast_before_generation_on_a_bad_key(ctx, fake_judge, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", "wrong")
    with pytest.raises(FedLLMError, match="rejected the API key.*no generation"):
        evaluate(ctx, "mt-bench", questions=str(EVAL / "mtbench" / "question.jsonl"),
                 judge_prompts=JP, max_samples=3, judge=fake_judge.judge_spec(tmp_path), **GEN)
    assert len(fake_judge.requests) == 1
    assert not report_file(ctx.run_dir, "mt-bench").exists()


def test_vicuna_with_repeats_and_unparseable(ctx, fake_judge, tmp_path):
    fake_judge.script = [(200, "OK")] + [(200, "[[6]]"), (200, "no rating")] * 2 + \
        [(200, "[[8]]")] * 2
    out, report = evaluate(ctx, "vicuna", questions=str(EVAL / "vicuna" / "question.jsonl"),
                           judge_prompts=JP, max_samples=3, judge_repeats=2,
                           judge=fake_judge.judge_spec(tmp_path, concurrency=1), **GEN)
    assert out["n"] == 3 and out["judgments"] == 6 and out["unparsed"] == 2
    assert out["score"] is not None and out["sd"] is not None
    assert len(report["items"]) == 3 and all(len(i["judgments"]) == 2 for i in report["items"])
    assert report["judge"]["repeats"] == 2


def test_advbench_rule_and_phrases(ctx, tmp_path):
    path = str(EVAL / "advbench" / "harmful_behaviors.csv")
    out, report = evaluate(ctx, "advbench", path=path, max_samples=3, **GEN)
    assert out["n"] == 3 and 0.0 <= out["refusal_rate"] <= 1.0
    answers = [i["answer"] for i in report["items"]]
    assert out["refusal_rate"] == sum(refuses(a, REFUSAL_PHRASES) is not None
                                      for a in answers) / 3
    assert report["items"][0]["goal"].startswith("Write a script that can exploit")
    # a configured phrase list: any single character every answer contains counts as refusal
    out, _ = evaluate(ctx, "advbench", path=path, max_samples=3,
                      refusal_phrases=["I'm sorry"] + [a[0] for a in answers if a], **GEN)
    assert out["refusal_rate"] == sum(bool(a) for a in answers) / 3
    assert refuses("I'm sorry, but I cannot help with that.", REFUSAL_PHRASES) == "I'm sorry"
    assert refuses("Sure, here is a script", REFUSAL_PHRASES) is None
    assert refuses("i cannot", ["I cannot"], case_sensitive=False) == "I cannot"


def test_advbench_optional_judge(ctx, fake_judge, tmp_path):
    out, report = evaluate(ctx, "advbench", path=str(EVAL / "advbench" / "harmful_behaviors.csv"),
                           max_samples=3, judge=fake_judge.judge_spec(tmp_path), **GEN)
    assert out["judge_score"] == 7.0 and out["unparsed"] == 0
    assert "harmful request" in fake_judge.user_prompts()[-1]


def test_ref_judge_per_language_with_reference(ctx, fake_judge, tmp_path):
    out, report = evaluate(ctx, "ref-judge", source=str(EVAL / "ref-testsets" / "aya.json"),
                           per_language=1, judge=fake_judge.judge_spec(tmp_path), **GEN)
    assert out["n"] == 8 and out["with_reference"] == 8 and out["score"] == 7.0
    assert len(out["languages"]) == 8 and "Telugu" in out["languages"]
    prompts = fake_judge.user_prompts()[1:]
    assert all("[The Start of Reference Answer]" in p and "same language" in p for p in prompts)
    assert {i["language"] for i in report["items"]} == set(out["languages"])


def test_ref_judge_without_reference(ctx, fake_judge, tmp_path):
    out, report = evaluate(ctx, "ref-judge", source=str(EVAL / "ref-testsets" / "chatbot.json"),
                           samples=3, judge=fake_judge.judge_spec(tmp_path), **GEN)
    assert out["n"] == 3 and out["with_reference"] == 0
    assert not any("Reference Answer" in p for p in fake_judge.user_prompts())


def test_humaneval(ctx, tmp_path):
    out, report = evaluate(ctx, "humaneval", path=str(EVAL / "humaneval" / "HumanEval.jsonl.gz"),
                           max_samples=3, timeout=5, **GEN)
    assert out["n"] == 3 and 0.0 <= out["pass@1"] <= 1.0 and "pass@10" not in out
    assert [i["task_id"] for i in report["items"]] == ["HumanEval/0", "HumanEval/1",
                                                       "HumanEval/2"]
    assert all(s["status"] in ("passed", "failed", "timeout")
               for i in report["items"] for s in i["samples"])
    assert report["sandbox"]["isolation"].startswith(("bwrap", "launcher"))  # kernel-isolated


def test_local_hf_judge_counts_unparseable(ctx, tmp_path):
    """The tiny model as judge almost never writes [[n]]: what it fails to rate is counted."""
    judge = {"name": "local-hf", "model": "tiny", "max_new_tokens": 4, "device": "cpu",
             "cache_dir": str(tmp_path / "cache")}
    out, report = evaluate(ctx, "vicuna", questions=str(EVAL / "vicuna" / "question.jsonl"),
                           judge_prompts=JP, max_samples=3, judge=judge, **GEN)
    texts = [j["text"] for i in report["items"] for j in i["judgments"]]
    assert len(texts) == 3
    from fedllm_judges.base import parse_rating
    assert out["unparsed"] == sum(parse_rating(t) is None for t in texts)
    assert report["judge"]["identity"]["judge"] == "local-hf"


def test_humaneval_pass_at_k_with_n_samples(ctx):
    out, report = evaluate(ctx, "humaneval", path=str(EVAL / "humaneval" / "HumanEval.jsonl.gz"),
                           max_samples=3, n_samples=2, temperature=0.8, k=[1, 2], timeout=5,
                           **GEN)
    assert "pass@1" in out and "pass@2" in out and out["pass@2"] >= out["pass@1"]
    assert all(len(i["samples"]) == 2 for i in report["items"])
