"""``fedllm bench SUITE``, ``fedllm report RUN_DIR...`` and ``fedllm push RUN_DIR REPO_ID``.

Contributed to the ``fedllm`` CLI by this distribution's ``fedllm.commands`` entry point; the
module imports only click (everything else loads inside the commands), so ``fedllm --help``
stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fedllm import Command, Plugin, hookimpl

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _consoles():
    from rich.console import Console

    return Console(stderr=True), Console()


class BenchCommands(Command):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_register_commands(self, cli: click.Group) -> None:
        for cmd in (bench, report, push):
            cli.add_command(cmd)


def _seeds(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 0,1,2"
                                 ) from None


@click.command(context_settings=CONTEXT)
@click.argument("suite", required=False)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where the runs and the report go (default: bench/<suite name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key in every run, e.g. --set dataset.source=/data/aya.")
@click.option("--seeds", default=None, metavar="S,S,...", help="Seeds (default: the suite's).")
@click.option("--isolate", is_flag=True,
              help="Run each cell as a `fedllm run` subprocess (a crash loses one cell).")
@click.option("--dry-run", is_flag=True,
              help="Validate every cell's config and list the grid; run nothing.")
@click.option("--report-only", is_flag=True,
              help="Rebuild the report from the finished cells; run nothing.")
@click.option("--list", "list_suites", is_flag=True, help="List the shipped suites.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs, CI).")
def bench(suite, out_dir, overrides, seeds, isolate, dry_run, report_only, list_suites,
          no_progress) -> None:
    """Run a benchmark grid resumably and report it like the paper's tables.

    SUITE is a shipped suite (fedllm-bench/table3-chatbotit, fedllm-bench/ci, ... see --list)
    or a suite YAML file. A finished cell is never rerun; an interrupted one resumes from its
    checkpoint. Writes report.md, report.html, table.csv, results.csv and PNG figures."""
    import json

    from rich.table import Table

    from fedllm.errors import FedLLMError

    from . import runner
    from . import suite as suites
    from .tables import write_report

    err, out = _consoles()
    if list_suites or not suite:
        t = Table(title="fedllm bench suites", caption="fedllm bench SUITE [--set ...]")
        t.add_column("suite", no_wrap=True)
        t.add_column("title")
        for name, title in suites.shipped().items():
            t.add_row(name, title)
        out.print(t)
        return
    s = suites.load(suite, _seeds(seeds), list(overrides))
    target = Path(out_dir) if out_dir else Path("bench") / s.name
    if dry_run:
        runner.resolve_cells(s, target)
        t = Table(title=f"{s.title}: {len(s.cells)} runs")
        for col in ("cell", "method", "column", "seed", "preset", "status"):
            t.add_column(col)
        for c in s.cells:
            t.add_row(c.id, c.row, c.column or "–", str(c.seed), c.preset or "–",
                      runner.status(target, c))
        out.print(t)
        err.print("[green]every cell's config resolves[/]")
        return
    manifest: dict[str, Any]
    if report_only:
        manifest = {"suite": s.name, "title": s.title, "cells": [
            {**c.spec(), "run_dir": str(runner.run_dir(target, c)),
             "status": "done" if runner.status(target, c) == "done" else "missing"}
            for c in s.cells]}
    else:
        manifest = runner.run_suite(s, target, err, isolate=isolate, progress=not no_progress)
    written = write_report(s, manifest, target)
    out.print(written["markdown"].read_text(encoding="utf-8"), markup=False, highlight=False)
    out.print(f"report: {written['markdown']}, {written['html']}, {written['table']}",
              highlight=False)
    failed = [c for c in manifest["cells"] if c.get("status") != "done"]
    if failed:
        raise FedLLMError(f"{len(failed)} of {len(manifest['cells'])} cells did not finish: "
                          + json.dumps([c["id"] for c in failed]))


@click.command(context_settings=CONTEXT)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False,
                                                                      exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where the PNGs and report.html go (default: RUN_DIR/report for one run, "
              "./report for several).")
def report(run_dirs, out_dir) -> None:
    """Plot runs per round: train loss per client and mean, evaluation metrics, ε spent, bytes
    down/up, peak memory, round time. Several RUN_DIRs are overlaid for comparison."""
    from .plots import write_run_report

    _, out = _consoles()
    target = Path(out_dir) if out_dir else (Path(run_dirs[0]) / "report" if len(run_dirs) == 1
                                            else Path("report"))
    written = write_run_report(list(run_dirs), target)
    out.print(f"{len(written['figures'])} figures and {written['html']}", highlight=False)


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--token", default=None, envvar="HF_TOKEN", help="Hub token (default: HF_TOKEN "
              "or the saved login).")
@click.option("--endpoint", default=None, envvar="HF_ENDPOINT",
              help="Hub URL (default: huggingface.co; HF_ENDPOINT).")
@click.option("--revision", default=None, help="Branch to commit to (default: main).")
@click.option("--to-dir", "to_dir", type=click.Path(file_okay=False), default=None,
              help="Write the repository's files (adapter, model card) here; upload nothing.")
def push(run_dir, repo_id, private, token, endpoint, revision, to_dir) -> None:
    """Upload a run's final adapter to the Hugging Face Hub as REPO_ID, with a generated model
    card (config, plugin versions, data, evaluation results)."""
    from . import push as pushing

    _, out = _consoles()
    if to_dir:
        target = pushing.stage(run_dir, repo_id, Path(to_dir))
        out.print(f"wrote {target} (README.md model card, adapter, fedllm_config.yaml)",
                  highlight=False)
        return
    url = pushing.push(run_dir, repo_id, private=private, token=token, endpoint=endpoint,
                       revision=revision)
    out.print(f"pushed: {url}", highlight=False)


plugin = Plugin(kind="command", name="bench", factory=BenchCommands,
                description="`fedllm bench` (resumable grids, paper-shaped reports), "
                "`fedllm report` (run plots), `fedllm push` (adapter + model card to the Hub).")
