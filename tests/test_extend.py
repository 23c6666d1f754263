"""A finished run extended with more rounds (``--resume RUN --set rounds=N``) equals a run with
N rounds from the start, and every extension that could not equal one is refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from fedllm.cli.main import main
from fedllm.testing import run_quick


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rounds_of(run: Path) -> list[int]:
    return [r["round"] for r in
            (yaml.safe_load(line) for line in (run / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("plan", [["schedule_rounds=4"], ["train.schedule=constant"]],
                         ids=["cosine-planned", "constant"])
def test_extending_a_finished_run_equals_the_longer_run(tmp_path, plan):
    short = run_quick(tmp_path, "rounds=2", "eval_every=0", *plan, name="short").run_dir.path
    full = run_quick(tmp_path, "rounds=4", "eval_every=0", *plan, name="full").run_dir.path
    before = adapter(short)
    res = cli("run", "--resume", short, "--set", "rounds=4", "--no-progress")
    assert res.exit_code == 0, res.output
    got, want = adapter(short), adapter(full)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not all(torch.equal(got[k], before[k]) for k in want)  # it really trained on
    assert yaml.safe_load((short / "config.yaml").read_text())["rounds"] == 4
    assert rounds_of(short) == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory):
    """A finished 2-round run on the default cosine schedule, planned for its 2 rounds."""
    return run_quick(tmp_path_factory.mktemp("ext"), "eval_every=0", name="cos").run_dir.path


def _refused(run: Path, *args: str) -> str:
    config, weights = (run / "config.yaml").read_text(), adapter(run)
    res = cli("run", "--resume", run, *args)
    assert res.exit_code == 2, res.output
    # nothing was touched: same config, same final adapter, same metrics
    assert (run / "config.yaml").read_text() == config
    assert all(torch.equal(adapter(run)[k], v) for k, v in weights.items())
    assert rounds_of(run) == [1, 2]
    return " ".join(res.output.split())


def test_a_schedule_planned_for_fewer_rounds_is_refused(cosine_run):
    out = _refused(cosine_run, "--set", "rounds=4")
    assert "train.schedule cosine planned for rounds=2" in out
    assert "--set schedule_rounds=MAX" in out


def test_dynamic_local_steps_are_a_plan_too(tmp_path):
    run = run_quick(tmp_path, "train.schedule=constant", "task.local_steps=dynamic",
                    "eval_every=0", name="dyn").run_dir.path
    out = _refused(run, "--set", "rounds=3")
    assert "task sft planned for rounds=2" in out and "train.schedule" not in out


def test_a_private_run_cannot_be_extended(tmp_path):
    run = run_quick(tmp_path, "schedule_rounds=8", "eval_every=0", name="dp",
                    config={"privacy": [{"name": "dp-fedavg", "noise_multiplier": 0.5,
                                         "clip_norm": 1.0, "epsilon": 1000}]}).run_dir.path
    out = _refused(run, "--set", "rounds=3")
    assert "privacy dp-fedavg" in out and "calibrated for 2 rounds" in out


def test_fewer_rounds_than_done_and_other_keys_are_refused(cosine_run):
    assert "allowed: rounds >= 2" in _refused(cosine_run, "--set", "rounds=1")
    out = _refused(cosine_run, "--set", "train.lr=0.1")
    assert "the only key it accepts is rounds=N" in out
    assert "rounds must be an integer" in _refused(cosine_run, "--set", "rounds=many")
