"""The `fedllm` command line: plugins, show, doctor, dry-run, and a third-party plugin."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from fedllm.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    res = CliRunner().invoke(main, list(args))
    return res


def test_plugins_lists_builtins_from_entry_points():
    res = invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)}
    for key in [("algorithm", "fedavg"), ("algorithm", "local"), ("sampler", "uniform"),
                ("task", "sft"), ("peft", "lora"), ("dataset", "embedded"),
                ("dataset", "fedllm-bench-json"), ("evaluator", "heldout-loss"),
                ("backend", "in-process")]:
        assert key in rows, key
        assert rows[key]["status"] == "ok" and rows[key]["description"]
    assert rows[("algorithm", "fedavg")]["distribution"] == "fedllm-algorithms"
    res = invoke("plugins", "--kind", "peft")
    assert "lora" in res.output and "fedavg" not in res.output


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    """A distribution whose entry point cannot be imported."""
    dist = tmp_path / "fedllm_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fedllm-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[fedllm.algorithms]\nbroken = fedllm_no_such_module:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "broken"


def test_broken_plugin_is_listed_not_fatal(broken_plugin):
    res = invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    row = next(r for r in json.loads(res.stdout) if r["name"] == broken_plugin)
    assert row["status"] == "broken" and "fedllm_no_such_module" in row["error"]
    assert row["distribution"] == "fedllm-broken"
    table = invoke("plugins")
    assert table.exit_code == 0 and "broken" in table.output


def test_selecting_a_broken_plugin_is_a_clear_error(broken_plugin, tmp_path):
    res = invoke("run", "--dry-run", "--set", "algorithm.name=broken")
    assert res.exit_code == 2
    assert "failed to load" in res.output and "fedllm-broken" in res.output


def test_plugins_show_prints_the_schema():
    res = invoke("plugins", "show", "lora")
    assert res.exit_code == 0, res.output
    for field in ("r", "alpha", "dropout", "target_modules"):
        assert field in res.output
    assert "16" in res.output
    res = invoke("plugins", "show", "nosuch")
    assert res.exit_code == 2 and "no installed plugin" in res.output


def test_dry_run_prints_resolved_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rounds: 3\nalgorithm:\n  name: fedavg\n")
    res = invoke("run", str(cfg), "--set", "rounds=20", "--set", "peft.r=4", "--dry-run")
    assert res.exit_code == 0, res.output
    d = yaml.safe_load(res.stdout)  # the checks line goes to stderr
    assert d["rounds"] == 20 and d["peft"]["r"] == 4 and d["peft"]["alpha"] == 32
    assert d["plugins"]["peft:lora"].startswith("fedllm-peft")
    assert not (tmp_path / "runs").exists()


def test_doctor_reports_stack_and_hardware():
    res = invoke("doctor")
    assert res.exit_code == 0, res.output
    assert "torch" in res.output and "cuda" in res.output and "bitsandbytes" in res.output


def test_doctor_says_what_the_run_will_use():
    res = invoke("doctor", "--set", "train.gradient_checkpointing=true", "--set",
                 "runtime.backend=flower-sim", "--set", "runtime.backend_options.workers=2")
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in res.output.splitlines() if line.count("│") == 3}
    assert rows["device"] == "cpu" and rows["quantization"] == "none", rows
    assert rows["gradient checkpointing"] == "True", rows
    assert rows["clients at once"].startswith("2 "), rows


@pytest.fixture
def third_party():
    pkg = ROOT / "examples" / "fedllm-fedavg-slr"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-build-isolation", str(pkg)],
                   check=True, capture_output=True)
    yield "fedavg-slr"
    subprocess.run([*pip, "uninstall", "-q", "-y", "fedllm-fedavg-slr"], check=True,
                   capture_output=True)


def test_third_party_plugin_is_listed_and_used(third_party, tmp_path):
    from tests.helpers import run_quick

    exe = Path(sys.executable).with_name("fedllm")
    listed = subprocess.run([str(exe), "plugins", "--json", "--kind", "algorithm"],
                            capture_output=True, text=True, check=True)
    row = next(r for r in json.loads(listed.stdout) if r["name"] == third_party)
    assert row["distribution"] == "fedllm-fedavg-slr" and row["status"] == "ok"

    frozen = run_quick(tmp_path, f"algorithm.name={third_party}", "algorithm.server_lr=0",
                       name="frozen")
    assert frozen.history[0]["cohorts"]["global"]["clients"]  # clients trained, but with
    init = run_quick(tmp_path, name="init", until=0).globals["global"]  # η_s = 0 the global
    assert all(torch.equal(frozen.globals["global"][k], init[k]) for k in init)  # never moved
    one = run_quick(tmp_path, f"algorithm.name={third_party}", "algorithm.server_lr=1",
                    name="one").globals["global"]
    avg = run_quick(tmp_path, name="avg").globals["global"]
    assert all(torch.allclose(one[k], avg[k], atol=1e-6) for k in avg)  # η_s = 1 is FedAvg
    assert not all(torch.equal(avg[k], init[k]) for k in avg)


HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "accelerate", "flwr", "opacus",
         "matplotlib")


@pytest.mark.parametrize("argv, allowed", [
    (["--help"], ()),  # not even pydantic: nothing is validated
    (["plugins"], ("pydantic",)),  # every plugin's config class is built
    (["presets"], ("pydantic",)),
    (["run", "--dry-run"], ("pydantic",)),  # validated from config.json, no weights
])
def test_light_commands_import_no_heavy_library(argv, allowed):
    """What keeps the CLI instant (benchmarks/cli_latency.py): these commands never import
    torch and friends, whatever plugins are installed; a plugin module or capability check
    that pulls one in fails here."""
    code = ("import sys\nfrom fedllm.cli.main import main\n"
            f"sys.argv = ['fedllm', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print(sorted(m for m in {(*HEAVY, 'pydantic')!r} if m in sys.modules), "
            "file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    imported = ast.literal_eval(res.stderr.strip().splitlines()[-1])
    assert set(imported) <= set(allowed), f"fedllm {' '.join(argv)} imported {imported}"
