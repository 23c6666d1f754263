"""Test-wide setup: offline, single-threaded, and a private FEDLLM_HOME per test session
(``fedllm_home`` comes from fedllm's own pytest plugin, ``fedllm.testing.plugin``)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _fedllm_home(fedllm_home):
    import torch

    torch.set_num_threads(1)
    yield str(fedllm_home)
