"""The Flower components pass their kinds' contract suites. ``flower-sim`` runs a round on
Ray and must equal the in-process round bit for bit; ``flower`` and ``flower-nodes`` work only
inside ``fedllm serve``, where the loopback deployment tests check the same equality."""

from __future__ import annotations

from fedllm.testing.contracts import BackendContract, CommandContract, DatasetContract

ONLY_IN_SERVE = lambda cls, component: False  # noqa: E731 - covered by test_flower_deploy


class TestFlowerSim(BackendContract):
    name = "flower-sim"
    config = {"num_supernodes": 2, "cpus": 2}


class TestFlowerBackend(BackendContract):
    name = "flower"
    applies = {"test_a_round_equals_the_in_process_round": ONLY_IN_SERVE}


class TestFlowerNodesDataset(DatasetContract):
    name = "flower-nodes"
    applies = {"test_every_client_has_samples_with_the_task_fields": ONLY_IN_SERVE,
               "test_fingerprint_is_stable": ONLY_IN_SERVE}


class TestFlowerCommands(CommandContract):
    name = "flower"
