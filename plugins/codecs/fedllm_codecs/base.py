"""What the codecs share: which directions a codec encodes, chain-order and backend checks,
and the per-tensor loop of the lossy codecs (difference from the reference, original dtype
restored on decode, non-float tensors passed through)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Codec, PluginConfig, hookimpl

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext
    from fedllm.messages import Params

Direction = Literal["both", "down", "up"]


class CodecConfig(PluginConfig):
    direction: Direction = Field("both", description="Encode messages going down (server to "
                                 "clients), up (clients to server) or both.")


def position(ctx: RunContext, obj: Any) -> int:
    """This codec's index in the run's chain."""
    return next(i for i, c in enumerate(ctx.plugins.of("codec")) if c.obj is obj)


class BaseCodec(Codec):
    def __init__(self, config: CodecConfig):
        self.config = config

    def applies(self, direction: str) -> bool:
        return self.config.direction in ("both", direction)

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        opts = ctx.config.runtime.backend_options or {}
        if opts.get("secure_aggregation"):
            return [f"codecs: {self.name!r} cannot encode uploads under "
                    "runtime.backend_options.secure_aggregation (the server only sees a masked "
                    "sum of the updates); remove the codecs or secure aggregation"]
        return None

    name = ""


class Lossy(BaseCodec):
    """A lossy codec encodes each float tensor on its own (its difference from the reference
    when one is given); integer tensors travel unchanged."""

    lossless = False

    def encode_tensor(self, name: str, x: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, Any]]:
        raise NotImplementedError

    def decode_tensor(self, name: str, tensors: Params, meta: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        problems = list(super().fedllm_check(ctx=ctx) or [])
        chain = ctx.plugins.of("codec")
        me = position(ctx, self)
        earlier = [c.name for c in chain[:me] if c.cap("lossless")]
        if earlier:
            problems.append(f"codecs.{me}.name: the lossy {self.name!r} comes after the lossless "
                            f"{', '.join(earlier)}; put lossless codecs last (they compress "
                            "what the lossy ones produce)")
        return problems

    @hookimpl
    def fedllm_codec_encode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None,
                            tensors: Params, reference: Params | None
                            ) -> tuple[Params, dict[str, Any]] | None:
        if not self.applies(direction):
            return None
        out: dict[str, Any] = {}
        metas: dict[str, Any] = {}
        for k, t in tensors.items():
            if not t.is_floating_point():
                out[k] = t
                metas[k] = {"raw": True}
                continue
            x = t.float()
            if reference is not None:
                x = x - reference[k].float()
            codes, meta = self.encode_tensor(k, x)
            out.update(codes)
            metas[k] = {**meta, "dtype": str(t.dtype).removeprefix("torch."),
                        "shape": list(t.shape)}
        return out, {"tensors": metas, "delta": reference is not None}

    @hookimpl
    def fedllm_codec_decode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None, tensors: Params,
                            meta: dict[str, Any], reference: Params | None) -> Params:
        import torch

        out: dict[str, Any] = {}
        for k, m in meta["tensors"].items():
            if m.get("raw"):
                out[k] = tensors[k]
                continue
            x = self.decode_tensor(k, tensors, m).reshape(m["shape"])
            if meta["delta"]:
                assert reference is not None, "an encoded change needs its reference"
                x = reference[k].float() + x
            out[k] = x.to(getattr(torch, m["dtype"]))
        return out
