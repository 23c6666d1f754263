"""The judge plugin point: rating parser, the OpenAI-compatible client against a real HTTP
server on 127.0.0.1, the on-disk cache, repeats and unparseable ratings."""

from __future__ import annotations

import socket
import time

import pytest
from evalkit import build

from fedllm.errors import ConfigError, FedLLMError
from fedllm_evaluators.common import summarize
from fedllm_judges.base import parse_rating


@pytest.mark.parametrize("text,expected", [
    ("[[7]]", 7.0), ("The answer is fine.\nRating: [[7.5]]", 7.5), ("garbage, no score", None),
    ("Rating: [8]", 8.0), ("[[11]]", None), ("format is [[rating]], e.g. [[5]] ... [[3]]", 3.0),
    ("", None), (None, None)])
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


def test_success_sends_model_key_and_messages(fake_judge, tmp_path):
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path))
    out = j.grade([("sys", "grade A"), ("sys", "grade B")])
    assert [o[0]["rating"] for o in out] == [7.0, 7.0]
    body = fake_judge.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert sorted(fake_judge.user_prompts()) == ["grade A", "grade B"]
    assert fake_judge.headers[0]["Authorization"] == "Bearer sk-test"


def test_429_then_success_retries(fake_judge, tmp_path):
    fake_judge.script = [(429, "slow down"), (200, "Rating: [[9]]")]
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path, concurrency=1))
    assert j.grade([("", "q")])[0][0]["rating"] == 9.0
    assert len(fake_judge.requests) == 2


def test_500_fails_after_retries(fake_judge, tmp_path):
    fake_judge.default = (500, "boom")
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path, retries=2))
    with pytest.raises(FedLLMError, match=r"failed after 3 attempts.*HTTP 500"):
        j.grade([("", "q")])
    assert len(fake_judge.requests) == 3


def test_malformed_rating_is_counted_not_dropped(fake_judge, tmp_path):
    fake_judge.script = [(200, "Rating: [[8]]"), (200, "I refuse to give a number")]
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path, concurrency=1))
    out = j.grade([("", "a"), ("", "b")])
    assert [o[0]["rating"] for o in out] == [8.0, None]
    assert out[1][0]["text"] == "I refuse to give a number"
    ratings = [[o[0]["rating"]] for o in out]
    s = summarize(ratings, None, "exclude")
    assert s["unparsed"] == 1 and s["judgments"] == 2 and s["score"] == 8.0
    assert summarize(ratings, None, "min")["score"] == 4.5  # 8 and a floor of 1


def test_cache_reruns_cost_nothing_and_resume(fake_judge, tmp_path):
    spec = fake_judge.judge_spec(tmp_path)
    build("judge", "openai-compatible", **spec).grade([("", "a")])
    assert len(fake_judge.requests) == 1
    j = build("judge", "openai-compatible", **spec)  # a new process would be the same
    out = j.grade([("", "a"), ("", "b")])  # "interrupted" after a; resumes with b only
    assert len(fake_judge.requests) == 2 and fake_judge.user_prompts()[-1] == "b"
    assert out[0][0]["cached"] and not out[1][0]["cached"]
    # another judge model is another cache key
    build("judge", "openai-compatible", **{**spec, "model": "other"}).grade([("", "a")])
    assert len(fake_judge.requests) == 3


def test_repeats_give_mean_and_sd(fake_judge, tmp_path):
    fake_judge.script = [(200, "[[6]]"), (200, "[[7]]"), (200, "[[8]]")]
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path, concurrency=1))
    out = j.grade([("", "q")], repeats=3)
    assert sorted(g["rating"] for g in out[0]) == [6.0, 7.0, 8.0]
    s = summarize([[g["rating"] for g in out[0]]], None, "exclude")
    assert s["score"] == pytest.approx(7.0) and s["sd"] == pytest.approx(1.0)


def test_bad_key_fails_fast_in_preflight(fake_judge, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-wrong")
    j = build("judge", "openai-compatible", **fake_judge.judge_spec(tmp_path))
    with pytest.raises(FedLLMError, match=r"rejected the API key from \$FAKE_JUDGE_KEY.*401"):
        j.preflight()
    assert len(fake_judge.requests) == 1  # no retries on a bad key
    monkeypatch.delenv("FAKE_JUDGE_KEY")
    with pytest.raises(FedLLMError, match=r"\$FAKE_JUDGE_KEY is not set"):
        j.preflight()


def test_unreachable_endpoint_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("K", "x")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    j = build("judge", "openai-compatible", base_url=f"http://127.0.0.1:{port}/v1",
              api_key_env="K", retries=1, backoff=0.01, timeout=2, cache_dir=str(tmp_path))
    t0 = time.time()
    with pytest.raises(FedLLMError, match=r"127\.0\.0\.1.*failed after 2 attempts.*preflight"):
        j.preflight()
    assert time.time() - t0 < 10


def test_judge_config_errors_name_the_field():
    from fedllm.config import resolve

    with pytest.raises(ConfigError, match=r"evaluators\.0\.judge.*temperature"):
        resolve({"evaluators": [{"name": "vicuna", "questions": "q.jsonl",
                                 "judge": {"name": "openai-compatible", "temperature": -1}}]})
    with pytest.raises(ConfigError, match=r"evaluators\.0\.judge.*'nope' is not installed"):
        resolve({"evaluators": [{"name": "vicuna", "judge": {"name": "nope"}}]})
