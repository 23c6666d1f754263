"""`fedllm bench`: the CI suite runs, FedAvg beats local training on the embedded data, the
report is written as Markdown, HTML, CSV and PNGs; cells are never rerun and an interrupted
cell resumes from its checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedllm.cli.main import main


@pytest.fixture(scope="module")
def ci_bench(fedllm_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "ci"
    res = CliRunner().invoke(main, ["bench", "fedllm-bench/ci", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_ci_suite_writes_the_report(ci_bench):
    out, _ = ci_bench
    for name in ("report.md", "report.html", "table.csv", "results.csv", "bench.json"):
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert any(p.startswith("bar-") for p in pngs) and any(p.startswith("curve-") for p in pngs)
    md = (out / "report.md").read_text()
    assert "| FedAvg | FL |" in md and "| Local training | local |" in md
    assert "mean ± sd over seeds 0, 1" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)  # self-contained
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6  # FedAvg x 2 seeds + local x 2 clients x 2 seeds


def test_fedavg_beats_local_training_on_heldout_loss(ci_bench):
    """The paper's headline result at toy scale: averaged over clients (each client's
    held-out loss counts once), FedAvg's global adapter is better than a client's own."""
    out, _ = ci_bench
    table = {(r["method"], r["metric"]): r for r in csv.DictReader((out / "table.csv").open())}
    metric = "held-out loss (mean over clients)"
    fl, local = float(table[("FedAvg", metric)]["mean"]), float(table[("Local training",
                                                                        metric)]["mean"])
    assert fl < local, (fl, local)
    md = (out / "report.md").read_text()
    assert f"FedAvg beats Local training on {metric} by +" in md
    assert "better in 2 of 2 seeds" in md


def test_a_finished_cell_is_never_rerun(ci_bench):
    out, _ = ci_bench
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    res = CliRunner().invoke(main, ["bench", "fedllm-bench/ci", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.output.count("done already") == 6
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}


def test_an_interrupted_cell_resumes_from_its_checkpoint(fedllm_home, tmp_path):
    from fedllm.config import resolve
    from fedllm.engine import Engine
    from fedllm_bench import runner
    from fedllm_bench import suite as suites

    spec = tmp_path / "mini.yaml"
    spec.write_text(
        "title: mini\npreset: fedllm-bench/ci-fedavg\nseeds: [3]\n"
        "set: [rounds=3, clients_per_round=2, train.local_steps=2, eval_every=0]\n"
        "rows: [{label: FedAvg}]\n"
        "metrics: [{label: loss, key: heldout-loss.loss, better: lower}]\n")
    out = tmp_path / "out"
    s = suites.load(str(spec))
    (cell,) = s.cells
    # a run killed after round 2 of 3: its checkpoint is there, its final adapter is not
    eng = Engine.new(resolve(runner.cell_config(out, cell)), progress=False)
    eng.run(until_round=2)
    assert runner.status(out, cell) == "interrupted"
    res = CliRunner().invoke(main, ["bench", str(spec), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output
    records = [json.loads(x) for x in (runner.run_dir(out, cell) / "metrics.jsonl")
               .read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3]
    # bit-identical to an uninterrupted run of the same cell
    whole = Engine.new(resolve({**runner.cell_config(tmp_path / "whole", cell)}),
                       progress=False)
    whole.run()
    again = [json.loads(x) for x in (whole.run_dir.path / "metrics.jsonl").read_text()
             .splitlines()]
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in records]
    assert runner.status(out, cell) == "done"


def test_dry_run_and_list(fedllm_home, tmp_path):
    res = CliRunner().invoke(main, ["bench", "--list"])
    assert res.exit_code == 0
    for name in ("fedllm-bench/ci", "fedllm-bench/table3-chatbotit", "fedllm-bench/table8-dp"):
        assert name in res.output
    res = CliRunner().invoke(main, ["bench", "fedllm-bench/ci", "--dry-run", "--out",
                                    str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "every cell's config resolves" in res.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("suite", ["table2-aya", "table3-chatbotit", "table4-wildchat",
                                   "table5-chatbotpa", "table6-languages", "table8-dp"])
def test_paper_suites_resolve(fedllm_home, tmp_path, suite):
    from fedllm_bench import runner
    from fedllm_bench import suite as suites

    s = suites.load(f"fedllm-bench/{suite}")
    assert s.cells and s.compare["baseline"] == "Local training"
    runner.resolve_cells(s, Path(tmp_path))


def test_isolate_runs_each_cell_as_fedllm_run(fedllm_home, tmp_path):
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "title: one\npreset: fedllm-bench/ci-fedavg\nseeds: [0]\n"
        "set: [rounds=1, clients_per_round=2, train.local_steps=1, runtime.threads=1]\n"
        "rows: [{label: FedAvg}]\n"
        "metrics: [{label: loss, key: heldout-loss.loss, better: lower}]\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["bench", str(spec), "--out", str(out), "--isolate",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    (cell,) = list((out / "cells").glob("*.yaml"))  # the config `fedllm run` was given
    assert (out / "runs" / cell.stem / "adapter").is_dir()
    assert "| FedAvg | FL |" in (out / "report.md").read_text()
