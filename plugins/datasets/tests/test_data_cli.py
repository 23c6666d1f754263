"""``fedllm data stats|show`` and a real run on a raw-layout dataset."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fedllm.cli.main import main

FIX = Path(__file__).parent / "fixtures"


def test_stats_prints_table1_and_writes_plots(tmp_path):
    res = CliRunner().invoke(main, [
        "data", "stats", "fed-wildchat", "--set", f"dataset.source={FIX / 'wildchat'}",
        "--set", "dataset.min_samples=4", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "samples / client" in res.output and "4.5 ± 0.5" in res.output
    st = json.loads((tmp_path / "fed-wildchat-stats.json").read_text())
    assert st["clients"] == 2 and st["samples"] == 9
    assert st["train_samples"] + st["heldout_samples"] == 9
    # "user turn 1 of conversation 1" is more tokens than nothing, and the same for all
    assert st["instruction_tokens"]["mean"] > 3 and st["response_tokens"]["std"] >= 0
    for png in ("fed-wildchat-quantity.png", "fed-wildchat-length.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_prints_a_clients_samples_and_rejects_unknown_clients():
    args = ["--set", f"dataset.source={FIX / 'arena.jsonl'}", "--set", "dataset.min_samples=3"]
    res = CliRunner().invoke(main, ["data", "show", "fed-chatbotpa", "--client",
                                    "arena_user_three", "-n", "2", *args])
    assert res.exit_code == 0, res.output
    assert res.output.count('"chosen"') == 2 and "PREFERRED" in res.output
    res = CliRunner().invoke(main, ["data", "show", "fed-chatbotpa", "--client", "nobody", *args])
    assert res.exit_code == 2
    assert "'nobody' is not a client of fed-chatbotpa" in res.output
    assert "arena_user_four" in res.output


def test_a_run_trains_on_a_raw_layout_dataset(tmp_path):
    from tests.helpers import run_quick

    eng = run_quick(tmp_path, "dataset.name=fed-chatbotit", f"dataset.source={FIX / 'arena.jsonl'}",
                    "dataset.min_samples=3", "rounds=1")
    assert eng.ctx.dataset.client_ids == ["arena_user_four", "arena_user_three"]
    assert len(eng.history) == 1
