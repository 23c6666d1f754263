"""Secure aggregation (Flower SecAgg+): the coordinator learns only the round's weighted mean,
and that mean is the in-process FedAvg result up to SecAgg+'s quantisation. (The deployment
with TLS and node keys is in test_flower_secure.py.)"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from flower_helpers import CLIENTS, adapter, assert_same_adapter, quick_config
from flwr.app import RecordDict
from flwr.common import FitIns, Parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedllm.errors import ConfigError, FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate
from fedllm_flower.codec import instruction_to_bytes
from fedllm_flower.secagg import node_train

# max_weight near the round's total weight (2 clients x 10 samples) keeps quantisation error
# about clipping_range / 2**22 x max_weight / 20 ≈ 1.5e-6 per entry; 2e-5 leaves room for
# stochastic rounding over 2 rounds but not for a wrong weighting (≥ 1e-3 here).
SECAGG = "runtime.backend_options.secure_aggregation={max_weight: 64}"
TOL = 2e-5


@pytest.mark.slow
def test_secure_aggregation_in_simulation_matches_in_process(tmp_path, fed_json):
    from tests.helpers import run_quick

    ref = run_quick(tmp_path, *quick_config(fed_json), name="ref")
    sa = run_quick(tmp_path, *quick_config(fed_json, "runtime.backend=flower-sim", SECAGG),
                   name="sa")
    assert_same_adapter(adapter(sa.run_dir.path), adapter(ref.run_dir.path), tol=TOL)
    with pytest.raises(AssertionError):  # quantised, so not bit-exact: the mean was masked
        assert_same_adapter(adapter(sa.run_dir.path), adapter(ref.run_dir.path), tol=0)
    for got, want in zip(sa.history, ref.history):
        # per-client sample counts and losses travel in the clear, as in Flower's SecAgg+
        assert got["cohorts"]["global"]["clients"].keys() == set(CLIENTS)
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-3)
        # the masked vectors, keys and shares cost more than the plain updates
        assert got["wire_bytes_up"] > 2 * got["bytes_up"] > 0


def _refused(tmp_path, fed_json, *extra, match):
    from tests.helpers import run_quick

    with pytest.raises(ConfigError, match=match):
        run_quick(tmp_path, *quick_config(fed_json, "runtime.backend=flower-sim", SECAGG,
                                          *extra), name="refused")
    assert not (tmp_path / "runs" / "refused").exists()  # refused before anything started


def test_secure_aggregation_refuses_algorithms_needing_individual_updates(tmp_path, fed_json):
    _refused(tmp_path, fed_json, "algorithm.name=scaffold",
             match=r"secure_aggregation: algorithm 'scaffold' needs each client's individual "
             r"update")


def test_secure_aggregation_refuses_server_side_per_update_privacy(tmp_path, fed_json):
    _refused(tmp_path, fed_json, "privacy=[{name: dp-fedavg, noise_multiplier: 1.0}]",
             match=r"privacy 'dp-fedavg' treats each client's update on the coordinator")


def test_secure_aggregation_checks_its_numbers(tmp_path, fed_json):
    _refused(tmp_path, fed_json, "runtime.backend_options.secure_aggregation.num_shares=3",
             "runtime.backend_options.secure_aggregation.reconstruction_threshold=3",
             match=r"secure_aggregation: `reconstruction_threshold` must be less than "
             r"`num_shares`")


def test_plugins_show_lists_the_secure_aggregation_options():
    from click.testing import CliRunner

    from fedllm.cli.main import main

    r = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["plugins", "show", "flower"])
    assert r.exit_code == 0, r.output
    for field in ("secure_aggregation", "secure_aggregation.max_weight",
                  "secure_aggregation.clipping_range", "secure_aggregation.num_shares"):
        assert f" {field} " in r.output, r.output


def _fit_content(max_weight=64.0, clip=1.0) -> RecordDict:
    params = {"w": torch.zeros(3)}
    conf = {"fedllm.config": "{}", "fedllm.weights": "samples", "fedllm.names": '["w"]',
            "fedllm.max_weight": max_weight, "fedllm.clipping_range": clip,
            "fedllm.ins.000000": instruction_to_bytes(
                ClientInstruction("global", 0, "a", params, 1e-3, 1)),
            "fedllm.ins.000001": instruction_to_bytes(
                ClientInstruction("global", 0, "b", params, 1e-3, 2))}
    return compat.fitins_to_recorddict(FitIns(Parameters([], ""), conf), keep_input=True)


def _train(deltas: dict[str, tuple[int, list[float]]]):
    def run(config, instructions):
        for ins in instructions:
            n, d = deltas[ins.client_id]
            yield ins, ClientUpdate(ins.client_id, n, {"w": torch.tensor(d)}, {"train_loss": 1.0})
    return run


def test_node_folds_its_clients_and_never_clips_silently():
    out = node_train(_fit_content(), _train({"a": (1, [0.3, 0.0, -0.6]),
                                             "b": (3, [0.1, 0.4, 0.2])}))
    res = compat.recorddict_to_fitres(out, keep_input=True)
    assert res.num_examples == 4  # the node's weight: its clients' summed sample counts
    (mean,) = [torch.from_numpy(a) for a in parameters_to_ndarrays(res.parameters)]
    torch.testing.assert_close(mean, torch.tensor([0.15, 0.3, 0.0]))
    members = json.loads(res.metrics["fedllm"])
    assert [(m["client_id"], m["num_samples"]) for m in members] == [("a", 1), ("b", 3)]

    with pytest.raises(FedLLMError, match=r"weight 40 exceeds .*max_weight=32; set it to at "
                       r"least 40"):
        node_train(_fit_content(max_weight=32), _train({"a": (20, [0.1] * 3),
                                                        "b": (20, [0.1] * 3)}))
    with pytest.raises(FedLLMError, match=r"beyond .*clipping_range=0.01"):
        node_train(_fit_content(clip=0.01), _train({"a": (32, [1.0] * 3), "b": (32, [1.0] * 3)}))


@pytest.mark.slow
def test_secure_aggregation_survives_a_killed_node(tmp_path, procs):
    """3 SuperNodes under SecAgg+ (threshold 2): one is killed after round 1; round 2
    completes with the other two (Flower rebuilds the dead node's masks) and records it."""
    from test_flower_deploy import start_federation
    from test_flower_dropout import wait_for_round

    from fedllm_datasets.embedded import raw

    three = ["arithmetic", "capitals", "antonyms"]
    fed = tmp_path / "fed3.json"
    fed.write_text(json.dumps({c: raw()["data"][c][:10] for c in three}), encoding="utf-8")
    serve, nodes = start_federation(
        procs, tmp_path, fed, "clients_per_round=3",
        "runtime.backend_options.secure_aggregation.max_weight=64",
        serve_args=["--insecure", "--secure-aggregation", "--round-timeout", "90"],
        join_args=["--insecure"], joins=three)
    metrics = wait_for_round(procs, serve, tmp_path / "runs" / "dep")
    os.killpg(nodes["antonyms"].pid, signal.SIGKILL)
    assert procs.wait(serve, 500) == 0, procs.log(serve)[-3000:]
    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert "dropped" not in recs[0]["cohorts"]["global"]
    assert recs[1]["cohorts"]["global"]["dropped"] == ["antonyms"]
    assert sorted(recs[1]["cohorts"]["global"]["clients"]) == ["arithmetic", "capitals"]
    assert adapter(tmp_path / "runs" / "dep")
