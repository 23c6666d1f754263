"""ClientInstruction / ClientUpdate <-> Flower ``RecordDict``.

Tensors travel in ``ArrayRecord``s holding one safetensors blob each (bit-exact round trip):
Flower moves every ``Array`` and every 5 MB chunk of it as its own object, one HTTP request per
object and hop, so an adapter of 100+ tensors as one array costs ~100 times fewer requests.
(A per-tensor ``ArrayRecord`` from a torch state_dict, the old form, still decodes.) Everything
else (ids, numbers, nested extras) travels as one JSON string in a ``ConfigRecord``.
Tensors nested in ``extras`` (e.g. SCAFFOLD's control variates) are lifted into their own
``ArrayRecord`` and replaced by a ``{"__tensor__": key}`` marker.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import safetensors.torch
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedllm.messages import ClientInstruction, ClientUpdate

_T = "__tensor__"
_META = "__meta__"
_PACKED = "__safetensors__"  # the one array of an ArrayRecord: a safetensors blob (uint8)


def _lift(obj: Any, out: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        out[path] = obj.detach().to("cpu").contiguous()
        return {_T: path}
    if isinstance(obj, dict):
        return {str(k): _lift(v, out, f"{path}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lift(v, out, f"{path}/{i}") for i, v in enumerate(obj)]
    return obj


def _drop(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_T}:
            return tensors[obj[_T]]
        return {k: _drop(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_drop(v, tensors) for v in obj]
    return obj


def _arrays(params: dict[str, torch.Tensor]) -> ArrayRecord:
    if not params:
        return ArrayRecord()
    blob = safetensors.torch.save({k: v.detach().to("cpu").contiguous()
                                   for k, v in params.items()})
    return ArrayRecord({_PACKED: Array(np.frombuffer(blob, dtype=np.uint8))})


def _tensors(rec: ArrayRecord | None) -> dict[str, torch.Tensor]:
    if rec is None or not len(rec):
        return {}
    if list(rec.keys()) == [_PACKED]:
        return dict(safetensors.torch.load(rec[_PACKED].numpy().tobytes()))
    return dict(rec.to_torch_state_dict())


def _ins_meta(ins: ClientInstruction, extra_t: dict[str, torch.Tensor]) -> str:
    """An instruction's non-tensor fields as JSON; tensors in extras are lifted into extra_t."""
    return json.dumps({"cohort": ins.cohort, "round": ins.round, "client_id": ins.client_id,
                       "lr": ins.lr, "seed": ins.seed,
                       "extras": _lift(ins.extras, extra_t, "x")})


def _ins_from(meta_json: str, params: dict[str, torch.Tensor],
              extra_t: dict[str, torch.Tensor]) -> ClientInstruction:
    meta = json.loads(meta_json)
    return ClientInstruction(cohort=meta["cohort"], round=meta["round"],
                             client_id=meta["client_id"], params=params, lr=meta["lr"],
                             seed=meta["seed"], extras=_drop(meta["extras"], extra_t))


def encode_instruction(ins: ClientInstruction, config: dict[str, Any]) -> RecordDict:
    """``config`` is the run's resolved config: the client builds its context from it."""
    extra_t: dict[str, torch.Tensor] = {}
    rd = RecordDict({"params": _arrays(ins.params),
                     "fedllm": ConfigRecord({"instruction": _ins_meta(ins, extra_t),
                                             "config": json.dumps(config)})})
    if extra_t:
        rd["extras"] = _arrays(extra_t)
    return rd


def decode_instruction(rd: RecordDict) -> tuple[ClientInstruction, dict[str, Any]]:
    ins = _ins_from(rd["fedllm"]["instruction"], _tensors(rd["params"]),
                    _tensors(rd.get("extras")))
    return ins, json.loads(rd["fedllm"]["config"])


def instruction_to_bytes(ins: ClientInstruction) -> bytes:
    """One instruction as one safetensors blob (for a ``bytes`` config value, e.g. in the
    FitIns of a SecAgg+ round): tensors by name, the rest as UTF-8 JSON in a byte tensor."""
    extra_t: dict[str, torch.Tensor] = {}
    meta = _ins_meta(ins, extra_t)
    tensors = {f"p/{k}": v.detach().to("cpu").contiguous() for k, v in ins.params.items()}
    tensors.update(extra_t)
    tensors[_META] = torch.frombuffer(bytearray(meta.encode()), dtype=torch.uint8)
    return safetensors.torch.save(tensors)


def instruction_from_bytes(blob: bytes) -> ClientInstruction:
    tensors = safetensors.torch.load(blob)
    meta = bytes(tensors.pop(_META).tolist()).decode()
    params = {k[2:]: v for k, v in tensors.items() if k.startswith("p/")}
    return _ins_from(meta, params, {k: v for k, v in tensors.items() if not k.startswith("p/")})


def encode_update(up: ClientUpdate) -> RecordDict:
    extra_t: dict[str, torch.Tensor] = {}
    extras = _lift(up.extras, extra_t, "x")
    meta = {"client_id": up.client_id, "num_samples": up.num_samples,
            "metrics": up.metrics, "extras": extras}
    rd = RecordDict({"params": _arrays(up.params),
                     "fedllm": ConfigRecord({"update": json.dumps(meta)})})
    if extra_t:
        rd["extras"] = _arrays(extra_t)
    return rd


def decode_update(rd: RecordDict) -> ClientUpdate:
    meta = json.loads(rd["fedllm"]["update"])
    extras = _drop(meta["extras"], _tensors(rd.get("extras")))
    return ClientUpdate(client_id=meta["client_id"], num_samples=meta["num_samples"],
                        params=_tensors(rd["params"]), metrics=meta["metrics"], extras=extras)


def wire_bytes(obj: Any) -> int:
    """Serialised size of a Flower record tree (what the transport carries, before framing)."""
    children = getattr(obj, "children", None) or {}
    return len(obj.deflate()) + sum(wire_bytes(c) for c in children.values())
