"""How much a run says: --quiet keeps results and alerts, the default shows a repeating library
notice once, --verbose shows everything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedllm.cli.main import main
from fedllm.output import ENV, NORMAL, QUIET, Console

QUICK = ["--set", "rounds=1", "--set", "clients_per_round=2", "--set", "train.local_steps=2",
         "--set", "train.batch_size=2", "--set", "evaluators=[]", "--set", "runtime.threads=1"]


@pytest.fixture(autouse=True)
def _normal(monkeypatch):
    monkeypatch.setenv(ENV, str(NORMAL))  # restored after the test, whatever the CLI set


def test_quiet_console_keeps_only_alerts(monkeypatch, capsys):
    console = Console(stderr=True, force_terminal=False)
    monkeypatch.setenv(ENV, str(QUIET))
    console.print("fedllm run runs/x")
    console.print("[yellow]warning:[/] the disk is nearly full")
    console.print("[bold red]error:[/] it is full")
    err = capsys.readouterr().err
    assert "fedllm run" not in err
    assert "warning: the disk is nearly full" in err and "error: it is full" in err


def test_quiet_run_prints_results_and_warnings_only(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["--quiet", "run", *QUICK, "--set", f"output_dir={tmp_path}",
                               "--set", "name=q"])
    assert res.exit_code == 0, res.output
    assert "plugins:" not in res.stderr and "rounds" not in res.stderr  # no header, no bars
    assert "run directory:" in res.stdout
    with open(tmp_path / "q" / "metrics.jsonl", "a") as f:
        f.write('{"round": 2, "lr"')  # a torn line: resuming warns about it
    res = runner.invoke(main, ["-q", "run", "--resume", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    assert "dropped a torn last line" in " ".join(res.stderr.split())
    assert "resuming" not in res.stderr


def test_quiet_and_verbose_exclude_each_other():
    res = CliRunner().invoke(main, ["-q", "-v", "plugins"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def _fedllm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop(ENV, None)
    exe = Path(sys.executable).with_name("fedllm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_8bit_cast_notice_shows_once_and_every_time_with_verbose(tmp_path):
    # the notice comes from bitsandbytes' inference matmul: heldout-loss evaluates in eval mode
    args = ["run", "--no-progress", *QUICK, "--set", "evaluators=[{name: heldout-loss}]",
            "--set", "model.quantization=8bit", "--set", f"output_dir={tmp_path}"]
    normal = _fedllm(*args, "--set", "name=normal")
    verbose = _fedllm("--verbose", *args, "--set", "name=verbose")
    assert normal.returncode == 0 and verbose.returncode == 0, normal.stderr + verbose.stderr
    cast = "MatMul8bitLt: inputs will be cast"
    assert normal.stderr.count(cast) == 1, normal.stderr
    assert verbose.stderr.count(cast) > 100  # every 8-bit layer of every batch (140 before)
