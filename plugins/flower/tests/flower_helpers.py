"""Helpers of the Flower tests: quick configs, adapters, processes we start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

FEDLLM = str(Path(sys.executable).parent / "fedllm")
CLIENTS = ["arithmetic", "capitals"]


def quick_config(fed_json: Path, *extra: str) -> list[str]:
    """2 rounds, both clients every round, the tiny model, no evaluation: a few seconds."""
    return ["rounds=2", "clients_per_round=2", "eval_every=0", "evaluators=[]",
            "train.local_steps=2", "train.batch_size=2", "runtime.threads=1", "seed=3",
            "dataset.name=fedllm-bench-json", f"dataset.path={fed_json}", "dataset.heldout=0",
            *extra]


def adapter(run_dir: Path) -> dict:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def assert_same_adapter(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        diff = (a[k].float() - b[k].float()).abs().max().item()
        assert diff <= tol, f"{k}: max |diff| {diff}"


class Procs:
    """Every process a test starts, each in its own session; all are killed at teardown."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        p = subprocess.Popen([FEDLLM, *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                             env=env, cwd=self.tmp, start_new_session=True)
        self.procs.append((p, log))
        return p

    def log(self, p: subprocess.Popen) -> str:
        return next(log for q, log in self.procs if q is p).read_text(errors="replace")

    def wait(self, p: subprocess.Popen, timeout: float) -> int:
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out; log:\n{self.log(p)[-3000:]}")

    def kill(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def close(self) -> None:
        for p, _ in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 10
        for p, _ in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(p)


