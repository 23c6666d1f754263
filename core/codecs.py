"""Message codecs on the wire: where the core applies the run's ``codec`` components.

A message has two parts, its adapter (``params``) and the tensors in its ``extras``; each part
goes through the chain of codecs (config order to encode, reverse to decode; see
:class:`fedllm.contract.Codec`). An encoded message is an ordinary message whose ``params``
are the encoded tensors and whose ``extras`` hold everything under one key, :data:`KEY`
(the codecs' metadata, the encoded extras tensors and the extras' non-tensor structure), so
every backend moves it unchanged: in this process, through worker processes, or as Flower
records. The application points:

* **down**, on the server (:class:`Wire`, per cohort and round): the shared adapter is
  encoded once, each client's extras separately; a client decodes in :func:`decode_instruction`
  before training (``fedllm.backends.run_client``);
* **up**, on the client (:func:`encode_update`, after privacy): the update's adapter is
  encoded against the adapter the client started from (the *decoded* down adapter, which the
  server computes too), so a lossy codec can send the change; the server decodes in
  :meth:`Wire.up` before privacy and aggregation.

Without codecs every function here returns its message unchanged: nothing is encoded,
counted or recorded differently.

Each message's reconstruction error is measured where it is encoded (decoding it locally):
``‖x̂ − x‖ / ‖x‖`` for the down adapter and extras, and ``‖θ̂_k − θ_k‖ / ‖θ_k − θ_ref‖``
for an uploaded adapter (relative to the client's change). The round record gets
``codec: {down: {...}, up: {...}}`` with encoded and float32 bytes and the mean error;
``bytes_down`` / ``bytes_up`` count the encoded tensors.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import FedLLMError
from .messages import ClientInstruction, ClientUpdate, Params, nbytes

if TYPE_CHECKING:
    from .context import RunContext

#: the extras key of an encoded message
KEY = "fedllm.codec"
_MARK = "__codec_tensor__"


def chain(ctx: RunContext) -> list[Any]:
    return ctx.plugins.of("codec")


# --------------------------------------------------------------------------- parts


def encode_part(ctx: RunContext, direction: str, cohort: str, round: int,
                client_id: str | None, tensors: Params, reference: Params | None
                ) -> tuple[Params, list[Any] | None]:
    """Run ``tensors`` through the chain; ``(encoded, metas)``, ``metas`` ``None`` when every
    codec passed. The reference goes to the first codec that encodes."""
    metas: list[Any] = []
    cur, ref = tensors, reference
    for comp in chain(ctx):
        out = comp.call("fedllm_codec_encode", ctx=ctx, direction=direction, cohort=cohort,
                        round=round, client_id=client_id, tensors=cur, reference=ref)
        if out is None:
            metas.append(None)
            continue
        cur, meta = out
        metas.append(meta)
        ref = None
    if all(m is None for m in metas):
        return tensors, None
    return cur, metas


def decode_part(ctx: RunContext, direction: str, cohort: str, round: int,
                client_id: str | None, tensors: Params, metas: list[Any],
                reference: Params | None) -> Params:
    comps = chain(ctx)
    if len(metas) != len(comps):
        raise FedLLMError(f"a {direction} message was encoded by {len(metas)} codec(s), this "
                          f"process has {len(comps)}: both sides need the same codecs config")
    first = next(i for i, m in enumerate(metas) if m is not None)
    cur = tensors
    for i in reversed(range(len(comps))):
        if metas[i] is None:
            continue
        cur = comps[i].call("fedllm_codec_decode", ctx=ctx, direction=direction, cohort=cohort,
                            round=round, client_id=client_id, tensors=cur, meta=metas[i],
                            reference=reference if i == first else None)
        if cur is None:
            raise FedLLMError(f"codec {comps[i].name} returned nothing from fedllm_codec_decode")
    return cur


def _lift(obj: Any, out: dict[str, Any], path: str) -> Any:
    """The non-tensor structure of ``obj``; its tensors go into ``out`` by path."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        out[path] = obj
        return {_MARK: path}
    if isinstance(obj, dict):
        return {k: _lift(v, out, f"{path}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lift(v, out, f"{path}/{i}") for i, v in enumerate(obj)]
    return obj


def _drop(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_MARK}:
            return tensors[obj[_MARK]]
        return {k: _drop(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_drop(v, tensors) for v in obj]
    return obj


def _err2(decoded: Params, original: Params, base: Params | None = None) -> tuple[float, float]:
    """``(‖decoded − original‖², ‖original − base‖²)`` in float64."""
    e = n = 0.0
    for k, v in original.items():
        x = v.double()
        e += float((decoded[k].double() - x).pow(2).sum())
        n += float((x - base[k].double()).pow(2).sum() if base is not None else x.pow(2).sum())
    return e, n


def _encode_extras(ctx, direction, cohort, round, client_id, extras):
    """``(extras to send, err², norm²)``: the codec key alone when tensors were encoded."""
    flat: dict[str, Any] = {}
    tree = _lift(extras, flat, "x")
    if not flat:
        return extras, 0.0, 0.0
    enc, metas = encode_part(ctx, direction, cohort, round, client_id, flat, None)
    if metas is None:
        return extras, 0.0, 0.0
    dec = decode_part(ctx, direction, cohort, round, client_id, enc, metas, None)
    e, n = _err2(dec, flat)
    return {KEY: {"extras": metas, "tree": tree, "tensors": enc}}, e, n


def _decode_extras(ctx, direction, cohort, round, client_id, extras):
    info = extras.get(KEY) if isinstance(extras, dict) else None
    if not info or "extras" not in info:
        return {k: v for k, v in extras.items() if k != KEY}
    flat = decode_part(ctx, direction, cohort, round, client_id, info["tensors"],
                       info["extras"], None)
    return _drop(info["tree"], flat)


def _with_meta(extras: dict[str, Any], params_metas: list[Any] | None) -> dict[str, Any]:
    if params_metas is None:
        return extras
    out = dict(extras)
    out[KEY] = {**out.get(KEY, {}), "params": params_metas}
    return out


# --------------------------------------------------------------------------- the client


def decode_instruction(ctx: RunContext, ins: ClientInstruction) -> ClientInstruction:
    """The instruction as the server built it (its adapter decoded); unchanged if plain."""
    info = ins.extras.get(KEY) if isinstance(ins.extras, dict) else None
    if info is None:
        return ins
    params = ins.params
    if info.get("params") is not None:
        params = decode_part(ctx, "down", ins.cohort, ins.round, None, ins.params,
                             info["params"], None)
    extras = _decode_extras(ctx, "down", ins.cohort, ins.round, ins.client_id, ins.extras)
    return replace(ins, params=params, extras=extras)


def encode_update(ctx: RunContext, ins: ClientInstruction, up: ClientUpdate) -> ClientUpdate:
    """Encode a (privatized) update for upload against ``ins.params``, the adapter the client
    started from; records its float32 bytes and reconstruction error in ``up.metrics``."""
    if not chain(ctx):
        return up
    raw = nbytes(up.params) + nbytes(up.extras)
    enc, metas = encode_part(ctx, "up", ins.cohort, ins.round, up.client_id, up.params,
                             ins.params)
    e = n = 0.0
    if metas is not None:
        dec = decode_part(ctx, "up", ins.cohort, ins.round, up.client_id, enc, metas, ins.params)
        e, n = _err2(dec, up.params, ins.params)
    extras, xe, xn = _encode_extras(ctx, "up", ins.cohort, ins.round, up.client_id, up.extras)
    if metas is None and extras is up.extras:
        return up
    metrics = {**up.metrics, "codec/raw_bytes": float(raw),
               "codec/rel_error": math.sqrt((e + xe) / (n + xn)) if n + xn > 0 else 0.0}
    return replace(up, params=enc, extras=_with_meta(extras, metas), metrics=metrics)


# --------------------------------------------------------------------------- the server


class Wire:
    """The server's side of one cohort's round: encodes instructions, decodes updates and
    records what the codecs did (nothing at all without codecs)."""

    def __init__(self, ctx: RunContext, cohort: str, round: int, glob: Params):
        self.ctx, self.cohort, self.round, self.glob = ctx, cohort, round, glob
        self.on = bool(chain(ctx))
        self._down: tuple[Params, list[Any] | None, Params] | None = None
        self.stats = {d: {"bytes": 0, "raw_bytes": 0, "err": 0.0, "messages": 0}
                      for d in ("down", "up")}

    def _shared(self) -> tuple[Params, list[Any] | None, Params]:
        """The cohort's adapter, encoded once per round: (encoded, metas, decoded)."""
        if self._down is None:
            c, r = self.cohort, self.round
            enc, metas = encode_part(self.ctx, "down", c, r, None, self.glob, None)
            dec = self.glob if metas is None else decode_part(self.ctx, "down", c, r, None,
                                                              enc, metas, None)
            self._e2 = _err2(dec, self.glob)
            self._down = (enc, metas, dec)
        return self._down

    def down(self, ins: ClientInstruction) -> ClientInstruction:
        if not self.on:
            return ins
        raw = nbytes(ins.params) + nbytes(ins.extras)
        if ins.params is self.glob:
            enc, metas, _ = self._shared()
            e, n = self._e2
        else:  # an algorithm sent this client other params: encode them on their own
            enc, metas = encode_part(self.ctx, "down", self.cohort, self.round, ins.client_id,
                                     ins.params, None)
            e = n = 0.0
            if metas is not None:
                e, n = _err2(decode_part(self.ctx, "down", self.cohort, self.round,
                                         ins.client_id, enc, metas, None), ins.params)
        extras, xe, xn = _encode_extras(self.ctx, "down", self.cohort, self.round,
                                        ins.client_id, ins.extras)
        out = replace(ins, params=enc, extras=_with_meta(extras, metas))
        s = self.stats["down"]
        s["bytes"] += nbytes(out.params) + nbytes(out.extras)
        s["raw_bytes"] += raw
        s["err"] += math.sqrt((e + xe) / (n + xn)) if n + xn > 0 else 0.0
        s["messages"] += 1
        return out

    def reference(self) -> Params:
        """What the clients started from: the decoded down adapter."""
        return self._shared()[2] if self.on else self.glob

    def up(self, u: ClientUpdate) -> ClientUpdate:
        if not self.on:
            return u
        info = u.extras.get(KEY) if isinstance(u.extras, dict) else None
        s = self.stats["up"]
        s["bytes"] += nbytes(u.params) + nbytes(u.extras)
        s["raw_bytes"] += int(u.metrics.get("codec/raw_bytes", nbytes(u.params)
                                            + nbytes(u.extras)))
        s["err"] += float(u.metrics.get("codec/rel_error", 0.0))
        s["messages"] += 1
        if info is None:
            return u
        if u.members is not None:
            raise FedLLMError("codecs cannot decode a securely aggregated update (its params "
                              "are a masked sum); use no codecs with secure aggregation")
        params = u.params
        if info.get("params") is not None:
            params = decode_part(self.ctx, "up", self.cohort, self.round, u.client_id, u.params,
                                 info["params"], self.reference())
        extras = _decode_extras(self.ctx, "up", self.cohort, self.round, u.client_id, u.extras)
        return replace(u, params=params, extras=extras)

    def record(self, record: dict[str, Any]) -> None:
        """Add this cohort's codec figures to the round's record (nothing without codecs)."""
        if not self.on:
            return
        out = record.setdefault("codec", {})
        for d, s in self.stats.items():
            r = out.setdefault(d, {"bytes": 0, "raw_bytes": 0, "rel_error": 0.0, "messages": 0})
            n = r["messages"] + s["messages"]
            if n:
                r["rel_error"] = (r["rel_error"] * r["messages"] + s["err"]) / n
            r["bytes"] += s["bytes"]
            r["raw_bytes"] += s["raw_bytes"]
            r["messages"] = n
            r["ratio"] = r["bytes"] / r["raw_bytes"] if r["raw_bytes"] else None
