"""Bad input: one clear message, exit code 2, and no run directory left behind."""

import json

import pytest
from click.testing import CliRunner

from fedllm.cli.main import main

QUICK = ["--set", "rounds=1", "--set", "train.local_steps=1", "--set", "clients_per_round=1",
         "--no-progress"]


def run_cli(tmp_path, *args):
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, ["run", *QUICK, "--set", f"output_dir={out}", *args])
    return res, out


def assert_clean_failure(res, out, *needles):
    assert res.exit_code == 2, res.output
    for n in needles:
        assert n in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def bench(tmp_path, data, *extra):
    p = tmp_path / "data.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return ["--set", "dataset.name=fedllm-bench-json", "--set", f"dataset.path={p}", *extra]


GOOD = [{"instruction": "Say hi", "response": "hi"}] * 3


@pytest.mark.parametrize("args,needles", [
    (["--set", "algorithm.name=fedavgx"], ["algorithm.name", "Did you mean 'fedavg'"]),
    (["--set", "algorithm.mu=0.1"], ["algorithm.mu: unknown key"]),
    (["--set", "train.lr=-1"], ["train.lr", "greater than 0", "-1"]),
    (["--set", "dataset.name=fedllm-bench-json"], ["dataset.path", "Field required"]),
])
def test_config_errors(tmp_path, args, needles):
    assert_clean_failure(*run_cli(tmp_path, *args), *needles)


def test_missing_dataset_file(tmp_path):
    res, out = run_cli(tmp_path, "--set", "dataset.name=fedllm-bench-json",
                       "--set", f"dataset.path={tmp_path / 'missing.json'}")
    assert_clean_failure(res, out, "dataset.path", "does not exist")


def test_malformed_json(tmp_path):
    assert_clean_failure(*run_cli(tmp_path, *bench(tmp_path, '{"a": [')), "not valid JSON")


def test_client_without_samples(tmp_path):
    assert_clean_failure(*run_cli(tmp_path, *bench(tmp_path, {"a": GOOD, "b": []})),
                         "client 'b' has no samples")


def test_sample_missing_a_field(tmp_path):
    data = {"a": GOOD, "b": [{"instruction": "Say hi"}, *GOOD]}
    assert_clean_failure(*run_cli(tmp_path, *bench(tmp_path, data)), "client 'b'", "response")


def test_sequence_longer_than_the_limit(tmp_path):
    data = {"a": GOOD, "b": [{"instruction": "x" * 400, "response": "y"}, *GOOD]}
    res, out = run_cli(tmp_path, *bench(tmp_path, data, "--set", "task.overflow=error"))
    assert_clean_failure(res, out, "client 'b'", "task.max_length=256")
    res, out = run_cli(tmp_path, "--set", "task.max_length=100000")
    assert_clean_failure(res, out, "task.max_length", "exceeds the model's context")


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    res = CliRunner().invoke(main, ["run", "--resume", str(tmp_path / "notarun")])
    assert res.exit_code == 2 and "not a fedllm run directory" in res.output
    assert list((tmp_path / "notarun").iterdir()) == []
    res = CliRunner().invoke(main, ["run", "--resume", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no such directory" in res.output


def test_existing_run_name_is_not_overwritten(tmp_path):
    out = tmp_path / "runs"
    (out / "taken").mkdir(parents=True)
    (out / "taken" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["run", *QUICK, "--set", f"output_dir={out}",
                                    "--set", "name=taken"])
    assert res.exit_code == 2 and "already exists" in res.output
    assert (out / "taken" / "keep.txt").read_text() == "mine"
