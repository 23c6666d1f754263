"""Top-k sparsification of uploads with error feedback.

A client sends, per tensor, only the ``fraction`` of entries of largest magnitude of
``v = Δ + e``, where ``Δ`` is its change from the adapter it started from and ``e`` the
residual it kept from its earlier uploads; the rest becomes the new residual,
``e ← v − sent`` (so nothing is lost, only delayed: error feedback, Stich et al. 2018). The
residual is per-client state in ``ctx.client_state`` (its own namespace beside the
algorithm's), written with the round: it rolls back with a checkpoint on ``--resume`` and
lives on the node under Flower, as algorithm state does.

On the wire: a bitmask of the kept positions (1 bit per entry, ``numpy.packbits``) and the
kept values in ``values`` precision (float16 by default: 2 bytes). At ``fraction: 0.1`` that
is ``1/32 + 0.1 · 2/4 ≈ 0.08`` of the float32 bytes. Uploads only: a download must give
every client the whole adapter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl
from fedllm.errors import ConfigError

from .base import BaseCodec, position

if TYPE_CHECKING:

    from fedllm.context import RunContext
    from fedllm.messages import Params

NAMESPACE = "codec-topk"


class TopKConfig(PluginConfig):
    fraction: float = Field(0.1, gt=0, le=1, description="Share of each tensor's entries sent "
                            "(largest |change + residual|).")
    values: Literal["float32", "float16", "bfloat16"] = Field(
        "float16", description="Precision of the values sent (the rounding error goes into "
        "the residual too).")
    error_feedback: bool = Field(True, description="Keep what was not sent as a per-client "
                                 "residual added to the next upload (off: it is dropped).")
    direction: Literal["up"] = Field("up", description="Uploads only.")


class TopK(BaseCodec):
    name = "topk"
    lossless = False

    def __init__(self, config: TopKConfig):
        self.config = config
        #: (cohort, client, round) -> (residual at the round's start, residual after it)
        self._state: tuple[tuple[str, str, int], dict[str, Any], dict[str, Any]] | None = None

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        problems = list(super().fedllm_check(ctx=ctx) or [])
        me = position(ctx, self)
        earlier = [c for c in ctx.plugins.of("codec")[:me]
                   if c.config is not None and getattr(c.config, "direction", "both")
                   in ("both", "up")]
        if earlier:
            names = ", ".join(c.name for c in earlier)
            problems.append(f"codecs.{me}.name: topk sparsifies the change itself, so it must "
                            f"come before the other upload codecs ({names}); move it first")
        return problems

    # -- the residual -----------------------------------------------------------------------

    def _residual(self, ctx: RunContext, cohort: str, client: str, round: int
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The client's residual as of the start of ``round`` and the one to save after it
        (loaded once per client and round: the update's two parts, adapter and extras, share
        the file; encoding a part again gives the same message)."""
        key = (cohort, client, round)
        if self._state is None or self._state[0] != key:
            store = ctx.client_state
            if store is None:
                raise ConfigError("codecs: topk with error_feedback keeps a residual per client "
                                  "and needs client state (ctx.client_state), which this "
                                  "process has not got")
            ns = f"{cohort}/{NAMESPACE}"
            store.forget_after(ns, client, round)  # a round run again starts from before it
            start = dict(store.load(ns, client) or {})
            self._state = (key, start, dict(start))
        return self._state[1], self._state[2]

    # -- the codec --------------------------------------------------------------------------

    @hookimpl
    def fedllm_codec_encode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None,
                            tensors: Params, reference: Params | None
                            ) -> tuple[Params, dict[str, Any]] | None:
        import numpy as np
        import torch

        if direction != "up" or client_id is None:
            return None
        ef = self.config.error_feedback
        residual, after = self._residual(ctx, cohort, client_id, round) if ef else ({}, {})
        vdtype = getattr(torch, self.config.values)
        out: dict[str, Any] = {}
        metas: dict[str, Any] = {}
        new_residual: dict[str, Any] = {}
        for k, t in tensors.items():
            if not t.is_floating_point():
                out[k] = t
                metas[k] = {"raw": True}
                continue
            v = t.float() - (reference[k].float() if reference is not None else 0.0)
            if k in residual and residual[k].shape == v.shape:
                v = v + residual[k].float()
            flat = v.reshape(-1)
            n = max(1, math.ceil(self.config.fraction * flat.numel()))
            idx = torch.topk(flat.abs(), n, sorted=False).indices.sort().values
            mask = torch.zeros(flat.numel(), dtype=torch.bool)
            mask[idx] = True
            vals = flat[idx].to(vdtype)
            sent = torch.zeros_like(flat)
            sent[idx] = vals.float()
            if ef:
                new_residual[k] = (flat - sent).reshape(v.shape)
            out[k] = torch.from_numpy(np.packbits(mask.numpy()))
            out[f"{k}#values"] = vals.view(torch.int16) if vdtype == torch.bfloat16 else vals
            metas[k] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                        "n": n}
        if ef:
            after.update(new_residual)
            ctx.client_state.save(f"{cohort}/{NAMESPACE}", client_id, round, after)
        return out, {"tensors": metas, "delta": reference is not None,
                     "values": self.config.values}

    @hookimpl
    def fedllm_codec_decode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None, tensors: Params,
                            meta: dict[str, Any], reference: Params | None) -> Params:
        import numpy as np
        import torch

        out: dict[str, Any] = {}
        for k, m in meta["tensors"].items():
            if m.get("raw"):
                out[k] = tensors[k]
                continue
            numel = math.prod(m["shape"])
            bits: Any = np.unpackbits(tensors[k].numpy(), count=numel).astype(bool)
            vals = tensors[f"{k}#values"]
            if meta["values"] == "bfloat16":
                vals = vals.view(torch.bfloat16)
            x = torch.zeros(numel, dtype=torch.float32)
            x[torch.from_numpy(bits)] = vals.float()
            x = x.reshape(m["shape"])
            if meta["delta"]:
                assert reference is not None, "an encoded change needs its reference"
                x = reference[k].float() + x
            out[k] = x.to(getattr(torch, m["dtype"]))
        return out


plugin = Plugin(kind="codec", name="topk", factory=TopK, Config=TopKConfig,
                description="Top-k sparsified uploads with per-client error feedback "
                "(bitmask + float16 values: ~0.08x at 10%).")
