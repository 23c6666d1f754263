"""sft and dpo pass the task contract suite (dpo on preference pairs)."""

from __future__ import annotations

from pathlib import Path

from fedllm.testing.contracts import TaskContract

PAIRS = Path(__file__).resolve().parents[2] / "datasets" / "tests" / "fixtures" / "hh_rlhf.jsonl"


class TestSFT(TaskContract):
    name = "sft"


class TestSFTVicuna(TaskContract):
    name = "sft"
    config = {"template": "vicuna"}


class TestDPO(TaskContract):
    name = "dpo"
    dataset = {"name": "hh-rlhf", "source": str(PAIRS), "num_clients": 3, "heldout": 0}
