"""Evaluators during training (metrics.jsonl + eval/<name>/round-N.json) and `fedllm eval` on a
finished run and on a bare adapter directory."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from evalkit import EVAL, report_file

from fedllm.cli.main import main
from tests.helpers import run_quick

ADV = str(EVAL / "advbench" / "harmful_behaviors.csv")
QUICK_ADV = {"name": "advbench", "path": ADV, "max_samples": 3, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-round run that evaluates heldout-loss and advbench during training."""
    tmp = tmp_path_factory.mktemp("evalrun")
    eng = run_quick(tmp, "eval_every=1", config={"evaluators": [{"name": "heldout-loss"},
                                                                 dict(QUICK_ADV)]})
    return eng.run_dir.path


def test_evaluators_run_during_training(finished_run):
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text()
               .splitlines()]
    assert len(records) == 2
    for rec in records:
        adv = rec["eval"]["global"]["advbench"]
        assert adv["n"] == 3 and 0.0 <= adv["refusal_rate"] <= 1.0
        assert "loss" in rec["eval"]["global"]["heldout-loss"]
    report = json.loads(report_file(finished_run, "advbench").read_text())
    assert report["round"] == 2 and len(report["items"]) == 3
    # every evaluator writes its report, heldout-loss too (per client), for every round
    for n in (1, 2):
        held = json.loads((finished_run / "eval" / "heldout-loss" / f"round-{n}.json")
                          .read_text())
        assert held["round"] == n
        assert held["loss"] == records[n - 1]["eval"]["global"]["heldout-loss"]["loss"]
        assert set(held["clients"]) == set(records[n - 1]["eval"]["global"]["heldout-loss"]
                                           ["clients"])


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_eval_a_run_directory(finished_run, fake_judge, tmp_path, monkeypatch):
    spec = json.dumps(fake_judge.judge_spec(tmp_path))
    out_dir = tmp_path / "out"
    res = cli("eval", finished_run, "--evaluator", "advbench", "--evaluator", "vicuna",
              "--set", f"advbench.path={ADV}", "--set", "advbench.max_samples=3",
              "--set", "advbench.max_new_tokens=4",
              "--set", f"vicuna.questions={EVAL / 'vicuna' / 'question.jsonl'}",
              "--set", f"vicuna.judge_prompts={EVAL / 'judge_prompts.jsonl'}",
              "--set", "vicuna.max_samples=3", "--set", "vicuna.max_new_tokens=4",
              "--set", f"vicuna.judge={spec}", "--judge-repeats", "2", "--output", out_dir)
    assert res.exit_code == 0, res.output
    assert "refusal_rate" in res.output and "vicuna" in res.output
    vic = json.loads(report_file(out_dir, "vicuna").read_text())
    assert vic["judge"]["repeats"] == 2 and vic["scores"]["judgments"] == 6
    assert vic["scores"]["score"] == 7.0 and vic["scores"]["sd"] == 0.0
    assert report_file(out_dir, "advbench").is_file()
    # the same evaluation again is served from the judgment cache: only the preflight is paid
    before = len(fake_judge.requests)
    res = cli("eval", finished_run, "--evaluator", "vicuna", "--set",
              f"vicuna.questions={EVAL / 'vicuna' / 'question.jsonl'}", "--set",
              f"vicuna.judge_prompts={EVAL / 'judge_prompts.jsonl'}", "--set",
              "vicuna.max_samples=3", "--set", "vicuna.max_new_tokens=4", "--set",
              f"vicuna.judge={spec}", "--judge-repeats", "2", "--output", out_dir, "--json")
    assert res.exit_code == 0, res.output
    assert len(fake_judge.requests) == before + 1
    assert json.loads(res.stdout)["global"]["vicuna"]["score"] == 7.0


def test_eval_a_bare_adapter_matches_the_run(finished_run, tmp_path):
    adapter = finished_run / "adapter"
    test = tmp_path / "mmlu.jsonl"
    test.write_text("".join(json.dumps({"question": f"q{i}?", "subject": "anatomy",
                                        "choices": ["a", "b", "c", "d"], "answer": i % 4}) + "\n"
                            for i in range(3)))
    args = ["--evaluator", "mmlu", "--set", f"mmlu.path={test}", "--set", "mmlu.shots=[0]",
            "--json"]
    a = cli("eval", adapter, *args, "--output", tmp_path / "a")
    b = cli("eval", finished_run, *args, "--output", tmp_path / "b")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra = json.loads(report_file(tmp_path / "a", "mmlu").read_text())
    rb = json.loads(report_file(tmp_path / "b", "mmlu").read_text())
    # the adapter really is loaded: same log-likelihoods from the run and the bare adapter
    for x, y in zip(ra["items"], rb["items"]):
        assert x["loglik_0shot"] == pytest.approx(y["loglik_0shot"], abs=1e-5)


def test_eval_bad_input_is_one_clear_line(finished_run, tmp_path):
    res = cli("eval", tmp_path, "--evaluator", "mmlu")
    assert res.exit_code == 2 and "neither a fedllm run directory" in res.output
    res = cli("eval", finished_run, "--evaluator", "mmlux")
    assert res.exit_code == 2 and "'mmlux' is not installed" in res.output
    assert "Did you mean 'mmlu'" in res.output
    res = cli("eval", finished_run, "--evaluator", "humaneval", "--set",
              "humaneval.n_samples=5")
    assert res.exit_code == 2 and "evaluators.0" in res.output and "temperature" in res.output
    res = cli("eval", finished_run, "--evaluator", "vicuna", "--judge-repeats", "0")
    assert res.exit_code == 2 and "--judge-repeats" in res.output


def test_ref_judge_on_the_runs_heldout_split(finished_run, fake_judge, tmp_path):
    """source: heldout reads the run's own dataset (loaded only because this evaluator needs
    it) and grades against each sample's human response."""
    spec = json.dumps(fake_judge.judge_spec(tmp_path))
    res = cli("eval", finished_run, "--evaluator", "ref-judge", "--set",
              f"ref-judge.judge={spec}", "--set", "ref-judge.samples=3", "--set",
              "ref-judge.max_new_tokens=4",
              "--output", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)["global"]["ref-judge"]
    assert scores["n"] == 3 and scores["with_reference"] == 3 and scores["score"] == 7.0
    report = json.loads(report_file(tmp_path / "o", "ref-judge").read_text())
    prompts = fake_judge.user_prompts()[1:]  # [0] is the preflight; order is concurrent
    assert len(prompts) == 3
    assert all(i["reference"] and any(i["reference"] in p for p in prompts)
               for i in report["items"])
