"""Test-wide setup: offline, single-threaded, and a private FEDLLM_HOME per test session."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _fedllm_home(tmp_path_factory):
    home = os.environ.get("FEDLLM_TEST_HOME") or str(tmp_path_factory.mktemp("fedllm-home"))
    os.environ["FEDLLM_HOME"] = home
    import torch

    torch.set_num_threads(1)
    yield home
