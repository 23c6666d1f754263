"""Every dataset of this distribution (and its `fedllm data` command) passes the dataset
contract suite of ``fedllm.testing`` on the offline fixtures."""

from __future__ import annotations

from pathlib import Path

from fedllm.testing.contracts import CommandContract, DatasetContract

FIX = str(Path(__file__).parent / "fixtures")
SFT = ["instruction", "response"]
PAIRS = ["prompt", "chosen", "rejected"]


class TestEmbedded(DatasetContract):
    name = "embedded"


class TestBenchJson(DatasetContract):
    name = "fedllm-bench-json"
    config = {"path": f"{FIX}/bench_release.json", "heldout": 1}  # {client_id: [samples]}


class TestFedAya(DatasetContract):
    name = "fed-aya"
    config = {"source": f"{FIX}/aya", "min_samples": 5}


class TestFedChatbotIT(DatasetContract):
    name = "fed-chatbotit"
    config = {"source": f"{FIX}/arena.jsonl", "min_samples": 3}


class TestFedChatbotPA(DatasetContract):
    name = "fed-chatbotpa"
    config = {"source": f"{FIX}/arena.jsonl", "min_samples": 3, "heldout": 0}
    task_fields = PAIRS


class TestFedWildChat(DatasetContract):
    name = "fed-wildchat"
    config = {"source": f"{FIX}/wildchat", "min_samples": 4}


class TestHf(DatasetContract):
    name = "hf"
    config = {"source": f"{FIX}/labelled.csv", "num_clients": 4, "heldout": 0,
              "columns": {"instruction": "question", "response": "answer"}}


class TestFedDolly(DatasetContract):
    name = "fed-dolly"
    config = {"source": f"{FIX}/dolly.jsonl"}


class TestHhRlhf(DatasetContract):
    name = "hh-rlhf"
    config = {"source": f"{FIX}/hh_rlhf.jsonl", "num_clients": 3}
    task_fields = PAIRS


class TestUltraFeedback(DatasetContract):
    name = "ultrafeedback"
    config = {"source": f"{FIX}/ultrafeedback", "num_clients": 2}
    task_fields = PAIRS


class TestFedGsm8k3(DatasetContract):
    name = "fed-gsm8k-3"
    config = {"source": f"{FIX}/gsm8k"}


class TestFedCodeAlpaca(DatasetContract):
    name = "fed-codealpaca"
    config = {"source": f"{FIX}/codealpaca.jsonl", "heldout": 0}


class TestDataCommand(CommandContract):
    name = "data"
