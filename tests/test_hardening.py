"""What an unlucky user or one bad client cannot break: the aggregate's guard, self-healing
run directories, and clear errors for bad input (each would have passed or crashed before)."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from fedllm.cli.main import main
from fedllm.contract import Privacy, hookimpl
from fedllm.errors import ConfigError, DataError, FedLLMError, RunDirError
from fedllm.testing import run_quick


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def strict_json_lines(path: Path) -> list[dict]:
    def no_nan(x):
        raise ValueError(f"{x} is not JSON")

    return [json.loads(line, parse_constant=no_nan)
            for line in path.read_text().splitlines() if line.strip()]


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


# --------------------------------------------------------------------------- the guard


def test_a_learning_rate_that_blows_up_is_refused_not_saved(tmp_path):
    res = cli("run", "--no-progress", "--set", "rounds=2", "--set", "train.lr=1e6",
              "--set", "train.local_steps=3", "--set", f"output_dir={tmp_path}",
              "--set", "name=r")
    assert res.exit_code == 2
    assert "every client update of cohort 'global' was rejected" in res.output
    assert "non-finite values" in res.output
    assert not (tmp_path / "r" / "adapter").exists()  # no NaN adapter is written
    strict_json_lines(tmp_path / "r" / "metrics.jsonl")  # still valid JSON


@pytest.fixture
def poisoning(monkeypatch):
    """A privacy component that turns one client's update into NaN (a broken or malicious
    client), injected next to the run's own components."""
    import fedllm.engine as engine_module
    from fedllm.plugins import PluginInfo, RunComponent

    class Poison(Privacy):
        @hookimpl
        def fedllm_privatize(self, ctx, instruction, update):
            if instruction.client_id == ctx.cohorts["global"][0]:
                for v in update.params.values():
                    v.fill_(float("nan"))

    real = engine_module.build_context

    def build_context(resolved, console=None, run_dir=None):
        ctx = real(resolved, console=console, run_dir=run_dir)
        info = PluginInfo("privacy", "poison", "test", "tests", "0")
        ctx.plugins.add(RunComponent(info, None, Poison()))
        return ctx

    monkeypatch.setattr(engine_module, "build_context", build_context)


def test_one_poisoned_client_is_rejected_and_recorded(tmp_path, poisoning):
    eng = run_quick(tmp_path, "rounds=2", "sampler.name=all", "evaluators=[]")
    bad = eng.ctx.cohorts["global"][0]
    for rec in strict_json_lines(eng.run_dir.path / "metrics.jsonl"):
        clients = rec["cohorts"]["global"]["clients"]
        assert "non-finite values" in clients[bad]["rejected"]
        assert all("rejected" not in c for cid, c in clients.items() if cid != bad)
    assert all(torch.isfinite(v).all() for v in adapter(eng.run_dir.path).values())


def test_an_update_norm_bound_rejects_or_clips(tmp_path):
    with pytest.raises(FedLLMError, match="beyond guard.max_update_norm"):
        run_quick(tmp_path, "rounds=1", "guard.max_update_norm=1e-9", name="rej")
    clipped = run_quick(tmp_path, "rounds=1", "guard.max_update_norm=1e-3",
                        "guard.action=clip", "evaluators=[]", name="clip")
    rec = clipped.history[0]["cohorts"]["global"]["clients"]
    assert all(c["clipped"].startswith("clipped from norm") for c in rec.values())
    init = run_quick(tmp_path, "rounds=1", name="init", until=0).globals["global"]
    moved = sum(float((clipped.globals["global"][k] - v).pow(2).sum()) for k, v in init.items())
    assert moved ** 0.5 <= 1e-3 * (1 + 1e-5)  # the mean of clipped updates stays in the ball


# --------------------------------------------------------------------------- run directories


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-round run (checkpoints after rounds 2 and 3 kept) and its uninterrupted adapter."""
    tmp = tmp_path_factory.mktemp("heal")
    eng = run_quick(tmp, "rounds=3", "evaluators=[]", name="full")
    return eng.run_dir.path, adapter(eng.run_dir.path)


def damaged_copy(finished, tmp_path, damage) -> Path:
    src, _ = finished
    run = tmp_path / "run"
    shutil.copytree(src, run)
    shutil.rmtree(run / "adapter")
    # as if it had crashed right after round 3's checkpoint: metrics of round 3 are there
    damage(run / "checkpoints" / "round-000003")
    return run


@pytest.mark.parametrize("damage, why", [
    (lambda c: (c / "state.safetensors").write_bytes(
        (c / "state.safetensors").read_bytes()[:100]), "does not match its checksum"),
    (lambda c: (c / "state.safetensors").unlink(), "state.safetensors is missing"),
    (lambda c: (c / "meta.json").write_text('{"round": 3, "sta'), "meta.json"),
    (lambda c: (c / "meta.json").unlink(), "meta.json is missing"),
    (lambda c: _flip(c / "state.safetensors"), "does not match its checksum"),
    (lambda c: (c / "checksums.json").unlink(), "checksums.json is missing"),
])
def test_a_damaged_last_checkpoint_falls_back_and_resumes_exactly(finished, tmp_path, damage,
                                                                   why):
    run = damaged_copy(finished, tmp_path, damage)
    res = cli("run", "--resume", run, "--no-progress")
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "skipped damaged checkpoint round-000003" in out and why in out
    assert "resuming from the intact checkpoint of round 2" in out
    _, want = finished
    got = adapter(run)
    assert all(torch.equal(got[k], want[k]) for k in want)  # round 3 recomputed exactly


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside a tensor: loads fine, gives other numbers
    path.write_bytes(bytes(data))


def test_no_intact_checkpoint_is_a_clear_error(finished, tmp_path):
    run = damaged_copy(finished, tmp_path, lambda c: (c / "meta.json").unlink())
    (run / "checkpoints" / "round-000002" / "state.safetensors").write_bytes(b"x")
    res = cli("run", "--resume", run)
    assert res.exit_code == 2 and "no intact checkpoint to resume from" in res.output


def test_a_torn_last_metrics_line_is_dropped(finished, tmp_path):
    run = damaged_copy(finished, tmp_path, lambda c: None)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"round": 3, "lr": 0.0')  # a crash mid-write of a 4th record
    res = cli("run", "--resume", run, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "dropped a torn last line of metrics.jsonl" in " ".join(res.output.split())
    assert [r["round"] for r in strict_json_lines(run / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("edit, key", [("algorithm:\n  name: fedprox", "algorithm.name"),
                                       ("peft:\n  r: 4", "peft.r")])
def test_an_edited_config_is_refused_naming_the_keys(finished, tmp_path, edit, key):
    import yaml

    run = damaged_copy(finished, tmp_path, lambda c: None)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    section, rest = edit.split(":\n  ")
    field, value = rest.split(": ")
    cfg[section][field] = yaml.safe_load(value)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("run", "--resume", run)
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "no longer matches the config its checkpoint of round 3 was written with" in out
    assert key in out


# --------------------------------------------------------------------------- bad input


def test_a_config_file_that_is_not_utf8(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_bytes(b"rounds: 3\nname: caf\xe9\n")
    res = cli("run", bad, "--dry-run")
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output


def test_an_output_dir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirError, match="output_dir: cannot create the run directory"):
        run_quick(blocker, "rounds=1")


def _release(tmp_path, data) -> str:
    p = tmp_path / "release.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


def test_a_sample_field_of_the_wrong_type(tmp_path):
    path = _release(tmp_path, {"a": [{"instruction": "Hi?", "response": "Hello."},
                                     {"instruction": 5, "response": "Five."}]})
    with pytest.raises(FedLLMError, match="field 'instruction' holds values of different "
                       "types"):
        run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={path}")


def test_a_client_named_twice_in_a_release(tmp_path):
    path = _release(tmp_path, '{"a": [{"instruction": "x", "response": "y"}], '
                              '"a": [{"instruction": "z", "response": "w"}]}')
    with pytest.raises(FedLLMError, match="names client 'a' more than once"):
        run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={path}")


def test_a_heldout_count_larger_than_a_client(tmp_path):
    with pytest.raises(FedLLMError, match=r"dataset.heldout=1000 would hold out all \d+ "
                                          r"samples of client"):
        run_quick(tmp_path, "dataset.heldout=1000")


def test_a_client_whose_samples_are_all_too_long_leaves_no_cache(tmp_path, fedllm_home):
    path = _release(tmp_path, {"ok": [{"instruction": "Hi?", "response": "Hello."}],
                               "long": [{"instruction": "x" * 600, "response": "y"}]})
    cache = Path(fedllm_home) / "encoded"
    before = set(cache.glob("*")) if cache.exists() else set()
    with pytest.raises(DataError, match="have no training samples: 'long'"):
        run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={path}",
                  "task.overflow=drop")
    assert set(cache.glob("*")) == before


def test_more_clients_per_round_than_clients_says_what_is_used(tmp_path):
    res = cli("run", "--no-progress", "--set", "rounds=1", "--set", "clients_per_round=50",
              "--set", "train.local_steps=1", "--set", "evaluators=[]",
              "--set", f"output_dir={tmp_path}")
    assert res.exit_code == 0, res.output
    assert ("clients_per_round=50 but the federation has 10 clients: those sample every "
            "client every round") in " ".join(res.output.split())


def test_a_full_disk_is_a_clear_message_and_a_consistent_run(tmp_path, monkeypatch):
    from fedllm.rundir import RunDir

    real = RunDir.append_metrics
    calls = {"n": 0}

    def full(self, record):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real(self, record)

    monkeypatch.setattr(RunDir, "append_metrics", full)
    with pytest.raises(FedLLMError, match="the disk is full .* --resume"):
        run_quick(tmp_path, "rounds=3", "evaluators=[]")
    monkeypatch.setattr(RunDir, "append_metrics", real)
    res = cli("run", "--resume", tmp_path / "r", "--no-progress")
    assert res.exit_code == 0, res.output


def test_client_side_privacy_must_cover_what_the_algorithm_uploads(tmp_path):
    res = cli("run", "--dry-run", "--set", "algorithm.name=scaffold",
              "--set", "privacy.0.name=user-dp")
    assert res.exit_code == 2
    assert ("'user-dp' privatizes the clients' adapter updates but not the tensors algorithm "
            "'scaffold' also uploads in update.extras") in " ".join(res.output.split())
    with pytest.raises(ConfigError):
        run_quick(tmp_path, "algorithm.name=scaffold", "privacy.0.name=dp-fedavg",
                  "privacy.0.noise_multiplier=1.0", "privacy.0.epsilon=null")
