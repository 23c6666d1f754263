"""Every evaluator and judge of this distribution passes its kind's contract suite, on the
tiny model and the real evaluation files in shared/data/eval (the judged benchmarks graded
by the local-hf judge on the tiny model; openai-compatible against a loopback server)."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

from fedllm.testing.contracts import EvaluatorContract, JudgeContract

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make evalkit importable
from evalkit import EVAL, FakeJudge  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
JUDGE = {"name": "local-hf", "model": "tiny", "max_new_tokens": 4, "device": "cpu"}
GEN = {"max_new_tokens": 4, "batch_size": 4}
JP = str(EVAL / "judge_prompts.jsonl")

_SERVER = FakeJudge()  # a chat-completions endpoint on 127.0.0.1 for the whole module
os.environ["FAKE_JUDGE_KEY"] = _SERVER.key
atexit.register(_SERVER.server.shutdown)


class TestHeldoutLoss(EvaluatorContract):
    name = "heldout-loss"
    writes_report = False  # its numbers are the whole result; they go to metrics.jsonl


class TestMMLU(EvaluatorContract):
    name = "mmlu"
    config = {"path": str(FIX / "mmlu.jsonl"), "shots": [0]}


class TestHumanEval(EvaluatorContract):
    name = "humaneval"
    config = {"path": str(EVAL / "humaneval" / "HumanEval.jsonl.gz"), "max_samples": 2,
              "max_new_tokens": 8, "timeout": 5}


class TestAdvBench(EvaluatorContract):
    name = "advbench"
    config = {"path": str(EVAL / "advbench" / "harmful_behaviors.csv"), "max_samples": 2, **GEN}


class TestMTBench(EvaluatorContract):
    name = "mt-bench"
    config = {"questions": str(EVAL / "mtbench" / "question.jsonl"),
              "references": str(EVAL / "mtbench" / "reference_answer_gpt-4.jsonl"),
              "judge_prompts": JP, "question_ids": [81, 111], "judge": JUDGE, **GEN}


class TestVicuna(EvaluatorContract):
    name = "vicuna"
    config = {"questions": str(EVAL / "vicuna" / "question.jsonl"), "judge_prompts": JP,
              "max_samples": 2, "judge": JUDGE, **GEN}


class TestRefJudge(EvaluatorContract):
    name = "ref-judge"
    config = {"samples": 2, "per_language": 1, "judge": JUDGE, **GEN}


class TestLocalHFJudge(JudgeContract):
    name = "local-hf"
    config = {k: v for k, v in JUDGE.items() if k != "name"}


class TestOpenAICompatibleJudge(JudgeContract):
    name = "openai-compatible"
    config = {"base_url": _SERVER.url, "model": "judge-model", "api_key_env": "FAKE_JUDGE_KEY",
              "retries": 0, "timeout": 10, "concurrency": 2}
