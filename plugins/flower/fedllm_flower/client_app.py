"""The Flower ClientApp: runs :func:`fedllm.backends.run_client` on this node's own data.

The server sends the run's resolved config with every instruction; the node applies its own
overrides (``fedllm join --data/--set``, carried in the SuperNode's node config) so that the
data source, which never leaves this machine, is the node's. The context (model, encoded data)
is built once per process and config and reused for later messages: ``fedllm join``'s warm
worker (``worker.py``) and each Ray actor of ``flower-sim`` serve many messages from one
process, so the model loads once per worker and run config. Every reply says how many contexts
its message had to build (``model_loads``); the backend adds them up per round.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp


def secagg_mod(msg: Message, context: Context, call_next) -> Message:
    """Flower's ``secaggplus_mod`` for the messages of a SecAgg+ round (they carry its config
    record); the rest pass through. SecAgg+'s key and share stages never import torch."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


# Stock Flower starts a fresh process per message: this module imports only Flower at load time.
app = ClientApp(mods=[secagg_mod])

#: node-config key naming this node's settings file (written by ``fedllm join``): JSON with
#: ``clients`` (ids this node holds; empty: any), ``set`` (KEY=VALUE overrides such as
#: ``dataset.path=...``), ``state_dir`` (per-client algorithm state), ``threads``.
NC_NODE = "fedllm-node"
#: reply field: contexts (model loads) this message needed (0 when the worker was warm)
MODEL_LOADS = "model_loads"

_CACHE: dict[str, Any] = {}
#: contexts (model + data) this process has built
STATS = {"contexts_built": 0}


def node_settings(node_config) -> dict[str, Any]:
    path = node_config.get(NC_NODE) if node_config else None
    if not path:
        return {}
    return json.loads(Path(str(path)).read_text(encoding="utf-8"))


def node_clients(node_config) -> list[str]:
    return list(node_settings(node_config).get("clients") or [])


def client_context(config: dict[str, Any], node_config) -> Any:
    """Build (or reuse) this process's client-side RunContext for ``config``."""
    from rich.console import Console

    from fedllm.config import apply_override, resolve
    from fedllm.context import client_context as build
    from fedllm.paths import fedllm_home

    data = json.loads(json.dumps(config))
    run_dir = data.pop("_run_dir", "")
    checkpointed = int(data.pop("_checkpointed_round", -1))
    node = node_settings(node_config)
    from .nodes_dataset import node_dataset

    data["dataset"] = node_dataset(data.get("dataset") or {})
    data["runtime"] = {**data.get("runtime", {}), "backend": "in-process", "backend_options": {}}
    if node.get("threads"):
        data["runtime"]["threads"] = int(node["threads"])
    for o in node.get("set") or []:
        apply_override(data, o)
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    if _CACHE.get("key") != key:
        _CACHE.clear()
        ctx = build(resolve(data), console=Console(stderr=True, quiet=True))
        _CACHE.update(key=key, ctx=ctx)
        STATS["contexts_built"] += 1
    ctx = _CACHE["ctx"]
    root = Path(node.get("state_dir") or fedllm_home() / "flower-client-state")
    ctx.client_state = node_store(root, run_dir, checkpointed)
    return ctx


def node_store(root: Path, run_dir: str, checkpointed: int):
    """This node's per-client state for one federation run (the coordinator's run directory
    names it), keeping each client's state as of the coordinator's last checkpoint."""
    from fedllm.state import ClientStateStore

    store = ClientStateStore(Path(root) / hashlib.sha256(str(run_dir).encode()).hexdigest()[:12])
    store.mark_checkpoint(checkpointed)
    return store


def _run(config: dict[str, Any], ins, node_config):
    """One client's local update on this node (the client must be one this node holds)."""
    from fedllm.backends import run_client
    from fedllm.errors import FedLLMError

    mine = node_clients(node_config)
    if mine and ins.client_id not in mine:
        raise FedLLMError(f"this node holds clients {mine}, not {ins.client_id!r}")
    ctx = client_context(config, node_config)
    # a resumed coordinator runs this round again: drop the client's state from it on
    ctx.client_state.forget_after(ins.cohort, ins.client_id, ins.round)
    return run_client(ctx, ins)


@app.train()
def train(msg: Message, context: Context) -> Message:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .codec import decode_instruction, encode_update
    from .secagg import is_secure, node_train

    if is_secure(msg):  # a SecAgg+ round: all of this node's clients, one masked reply
        return Message(node_train(msg.content, lambda config, instructions: (
            (ins, _run(config, ins, context.node_config)) for ins in instructions)),
            reply_to=msg)
    ins, config = decode_instruction(msg.content)
    loads = STATS["contexts_built"]
    try:
        content = encode_update(_run(config, ins, context.node_config))
    except Exception as exc:  # reported to the coordinator as this client's error
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        content = RecordDict({"fedllm": ConfigRecord({"error": detail})})
    content["fedllm"][MODEL_LOADS] = STATS["contexts_built"] - loads
    return Message(content, reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Which clients does this node hold? (the coordinator maps clients to nodes with it)"""
    return Message(RecordDict({"fedllm": ConfigRecord(
        {"clients": ",".join(node_clients(context.node_config))})}), reply_to=msg)
