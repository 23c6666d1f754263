"""Secure aggregation with Flower's SecAgg+: the coordinator learns only a round's weighted mean.

Flower's own protocol code runs both ends: :class:`flwr.server.workflow.SecAggPlusWorkflow` on
the coordinator and :func:`flwr.client.mod.secaggplus_mod` in every ClientApp (key agreement,
Shamir shares, masking, dropout recovery). We only feed it and read it:

* the workflow asks a Flower ``Strategy`` for each node's fit instructions and hands it the
  unmasked result; :class:`_Relay` is that strategy, and it neither samples nor aggregates
  (our sampler chose the clients, our algorithm folds the result);
* a SuperNode trains all of its sampled clients, folds their deltas Δ_k = θ_k − θ_t with the
  algorithm's declared weights w_k (``fedllm_aggregation_weights``) and reports the node's mean
  Δ with weight Σ w_k; the mod masks ``Σw/max_weight · Δ`` so the workflow's unmasked result is
  the round's weighted mean Δ over every answering client;
* the engine receives one :class:`ClientUpdate` with θ_t + mean Δ whose ``members`` list the
  clients it stands for. Sample counts and training metrics travel in the clear, as Flower's
  SecAgg+ does with its ``FitRes`` metrics; adapter updates never do.

Algorithms that need individual updates (no declared weights) and privacy plugins that treat
each update on the server (``fedllm_privatize_updates``) are refused before the run starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow

from fedllm.aggregation import RunningMean
from fedllm.errors import ConfigError, FedLLMError
from fedllm.messages import ClientInstruction, ClientUpdate, RoundReport

from .codec import instruction_from_bytes, instruction_to_bytes, wire_bytes
from .options import SECAGG_FIELD as FIELD
from .options import SecAggConfig

if TYPE_CHECKING:
    from rich.console import Console
_INS = "fedllm.ins."  # FitIns config keys: one serialised ClientInstruction per client
_FITINS = "fitins.config"


class _SecAggPlus(SecAggPlusWorkflow):
    """Flower's workflow with one fix: a node that drops before it has shared its key shares
    (setup or share-keys stage) put no masks in the sum, so it leaves the set whose masks are
    rebuilt. Flower 1.41 keeps it there and asks the survivors, in the unmask stage, for its
    shares, which they never received: a KeyError on every node, and the round is lost."""

    def share_keys_stage(self, grid, context, state) -> bool:
        ok = super().share_keys_stage(grid, context, state)
        state.sampled_node_ids = set(state.active_node_ids)
        return ok


def workflow(cfg: SecAggConfig, timeout: float | None) -> SecAggPlusWorkflow:
    try:
        return _SecAggPlus(cfg.num_shares, cfg.reconstruction_threshold,
                                  max_weight=cfg.max_weight, clipping_range=cfg.clipping_range,
                                  quantization_range=cfg.quantization_range, timeout=timeout)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{FIELD}: {exc}") from None


# -- coordinator ----------------------------------------------------------------------------


class _Relay(Strategy):
    """What SecAggPlusWorkflow calls: our instructions in, the unmasked mean out."""

    def __init__(self, proxies: dict[int, tuple[GridClientProxy, FitIns]]):
        self.proxies = proxies
        self.results: list[tuple[Any, FitRes]] = []

    def configure_fit(self, server_round, parameters, client_manager):
        return list(self.proxies.values())

    def aggregate_fit(self, server_round, results, failures):
        self.results = list(results)
        return (self.results[0][1].parameters if self.results else None), {}

    def initialize_parameters(self, client_manager):
        return None

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _Tap:
    """The Grid as the workflow sees it, counting bytes each way and keeping error replies."""

    def __init__(self, grid: Any):
        self.grid = grid
        self.down = self.up = 0
        self.errors: dict[int, str] = {}

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.down += sum(wire_bytes(m.content) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            if r.has_error():
                self.errors[r.metadata.src_node_id] = f"{r.error.code}: {r.error.reason}"
            else:
                self.up += wire_bytes(r.content)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


def secure_round(report: RoundReport, grid: Any, node_of: dict[str, int],
                 instructions: list[ClientInstruction], config: dict[str, Any],
                 cfg: SecAggConfig, weights: str, round_timeout: float | None,
                 min_clients: int, console: Console) -> Iterator[ClientUpdate]:
    """Run one cohort's round under SecAgg+ and yield the single aggregate update; fill the
    ``report``'s dropped clients and wire statistics."""
    by_node: dict[int, list[ClientInstruction]] = {}
    for ins in instructions:
        node = node_of.get(ins.client_id)
        if node is None:
            raise FedLLMError(f"no SuperNode serves client {ins.client_id!r}")
        by_node.setdefault(node, []).append(ins)
    rnd = instructions[0].round
    if len(by_node) < 2:
        raise FedLLMError(f"round {rnd}: secure aggregation needs the sampled clients on at "
                          f"least 2 SuperNodes, but all {len(instructions)} are on node "
                          f"{next(iter(by_node))}; sample more clients or connect more nodes")
    glob = instructions[0].params
    names = sorted(glob)
    shared = {"fedllm.config": json.dumps(config), "fedllm.weights": weights,
              "fedllm.names": json.dumps(names), "fedllm.max_weight": cfg.max_weight,
              "fedllm.clipping_range": cfg.clipping_range}
    empty = Parameters(tensors=[], tensor_type="")
    proxies = {}
    for node, items in by_node.items():
        conf = dict(shared, **{f"{_INS}{i:06d}": instruction_to_bytes(ins)
                               for i, ins in enumerate(items)})
        proxies[node] = (GridClientProxy(node, grid, 0), FitIns(empty, conf))
    relay = _Relay(proxies)
    base = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    base.state.config_records["config"] = ConfigRecord({"current_round": rnd + 1})
    base.state.array_records["parameters"] = ArrayRecord()
    tap = _Tap(grid)
    workflow(cfg, round_timeout)(tap, LegacyContext(base, strategy=relay))
    report.stats = {"wire_bytes_down": tap.down, "wire_bytes_up": tap.up}
    answered = {proxy.node_id for proxy, _ in relay.results}
    report.dropped = sorted(i.client_id for n, items in by_node.items() if n not in answered
                            for i in items)
    if not relay.results:
        why = "; ".join(f"node {n}: {e}" for n, e in tap.errors.items()) or "too few replies"
        raise FedLLMError(f"round {rnd}: secure aggregation halted ({len(answered)} of "
                          f"{len(by_node)} SuperNodes completed it): {why}")
    for node, err in tap.errors.items():
        console.print(f"[yellow]warning:[/] SuperNode {node} failed in secure "
                      f"aggregation: {err}")
    members = [m for _, res in relay.results for m in json.loads(str(res.metrics["fedllm"]))]
    if len(members) < min(min_clients, len(instructions)):
        raise FedLLMError(f"only {len(members)} of {len(instructions)} clients answered "
                          f"(min_clients={min_clients}); dropped {report.dropped}")
    arrays = parameters_to_ndarrays(relay.results[0][1].parameters)
    params = {k: glob[k].float() + torch.from_numpy(np.asarray(a, dtype=np.float32))
              .reshape(glob[k].shape) for k, a in zip(names, arrays, strict=True)}
    yield ClientUpdate(client_id=f"secure-aggregate/{rnd}",
                       num_samples=sum(int(m["num_samples"]) for m in members),
                       params=params, members=members)


# -- SuperNode ------------------------------------------------------------------------------


def is_secure(msg: Message) -> bool:
    return _FITINS in msg.content.config_records


def node_train(content: RecordDict, run_clients) -> RecordDict:
    """Train this node's clients of the round; reply with their weighted mean Δ as a FitRes
    (``secaggplus_mod`` masks it on the way out). ``run_clients(config, instructions)`` yields
    each client's ``(instruction, update)``; errors propagate, so the node drops out."""
    conf = compat.recorddict_to_fitins(content, keep_input=True).config
    names = json.loads(str(conf["fedllm.names"]))
    weights = str(conf["fedllm.weights"])
    instructions = [instruction_from_bytes(conf[k]) for k in sorted(conf) if k.startswith(_INS)]
    acc = RunningMean(torch.float64)
    members = []
    for ins, up in run_clients(json.loads(str(conf["fedllm.config"])), instructions):
        acc.add(up.delta(ins.params), float(up.num_samples) if weights == "samples" else 1.0)
        members.append({"client_id": up.client_id, "num_samples": up.num_samples,
                        "metrics": up.metrics})
    mean = acc.result()
    total = int(round(acc.weight))
    max_weight, clip = float(conf["fedllm.max_weight"]), float(conf["fedllm.clipping_range"])
    if total > max_weight:
        raise FedLLMError(f"this node's weight {total} exceeds {FIELD}.max_weight="
                          f"{max_weight:g}; set it to at least {total} on the coordinator")
    peak = max(float(v.abs().max()) for v in mean.values()) * total / max_weight
    if peak > clip:
        raise FedLLMError(f"this node's update reaches {peak:.4g} (weight-scaled) beyond "
                          f"{FIELD}.clipping_range={clip:g}; raise clipping_range so nothing "
                          "is clipped")
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([mean[k].numpy() for k in names]),
                 total, {"fedllm": json.dumps(members)})
    return compat.fitres_to_recorddict(res, keep_input=True)
