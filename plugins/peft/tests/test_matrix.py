"""Every installed algorithm × every installed peft method runs a round on the tiny model:
one client, one step, the final adapter saved; with FedAvg also the held-out loss of the
model the server evaluates (one evaluation per peft method keeps the matrix fast).

New algorithms and peft methods join the matrix by being installed. Each cell is a real
``Engine`` run (sampling, instruction, local step, aggregation, evaluation, save), ~0.5 s."""

from __future__ import annotations

import math

import pytest
import torch

from fedllm.plugins import installed_names
from fedllm.testing import QUICK

ALGORITHMS = installed_names("algorithm")
PEFTS = installed_names("peft")

#: small but valid settings for the tiny model (hidden size 128)
SMALL = {
    "lora": ["peft.r=4"], "dora": ["peft.r=4"], "loha": ["peft.r=4"], "lokr": ["peft.r=4"],
    "vera": ["peft.r=32"], "fourierft": ["peft.n_frequency=64"],
    "prompt-tuning": ["peft.num_virtual_tokens=4"],
    "p-tuning": ["peft.num_virtual_tokens=4", "peft.encoder_hidden_size=32"],
    "prefix-tuning": ["peft.num_virtual_tokens=4"],
    "offsite": ["peft.adapter_layers=1", "peft.drop=0.5"],
}


def _engine(tmp_path, *overrides):
    from rich.console import Console

    from fedllm.config import apply_override, resolve
    from fedllm.engine import Engine

    data: dict = {}
    for o in [*QUICK, f"output_dir={tmp_path}", "name=r", *overrides]:
        apply_override(data, o)
    return Engine.new(resolve(data), console=Console(stderr=True, quiet=True), progress=False)


@pytest.fixture(scope="session")
def tiny4(fedllm_home):
    """The tiny model with 4 blocks (offsite-tuning needs a middle to drop)."""
    from fedllm.tiny import TINY_VERSION, ensure_tiny

    return ensure_tiny(fedllm_home / "models" / f"tiny4-{TINY_VERSION}", num_hidden_layers=4)


def test_the_matrix_covers_at_least_six_peft_methods_and_every_algorithm():
    assert len(PEFTS) >= 6 and {"lora", "prompt-tuning", "p-tuning", "prefix-tuning", "ia3",
                                "dora"} <= set(PEFTS)
    assert {"fedavg", "fedprox", "scaffold", "fedadam"} <= set(ALGORITHMS)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("peft", PEFTS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_runs_a_round_with_every_peft_method(algorithm, peft, tmp_path, tiny4):
    extra = list(SMALL.get(peft, []))
    if peft == "offsite":
        extra.append(f"model.name_or_path={tiny4}")
    evaluate = algorithm == "fedavg"
    if evaluate:
        extra.append("evaluators=[{name: heldout-loss, max_samples_per_client: 1}]")
    eng = _engine(tmp_path, f"algorithm.name={algorithm}", f"peft.name={peft}", "rounds=1",
                  "clients_per_round=1", "train.local_steps=1", "train.batch_size=1",
                  "checkpoint_every=0", "evaluators=[]", *extra)
    initial = {c: {k: v.clone() for k, v in g.items()} for c, g in eng.globals.items()}
    eng.run()
    (rec,) = eng.history
    assert math.isfinite(rec["train_loss"])
    if evaluate:
        assert math.isfinite(rec["eval"]["global"]["heldout-loss"]["loss"])
    glob = eng.globals["global"]
    assert set(glob) == set(eng.ctx.trainable) and rec["bytes_up"] > 0
    assert any(not torch.equal(glob[k], v) for k, v in initial["global"].items()), \
        "one step changed nothing"
    assert (eng.run_dir.path / "adapter" / "adapter_config.json").is_file()
