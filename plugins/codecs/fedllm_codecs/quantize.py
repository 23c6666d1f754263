"""Quantizing codecs (FS-LLM's quantization operator): fp16, bf16, and int8 with per-channel
scales. Each encodes a float tensor, or its change from the reference (an upload: the update
minus the adapter the client started from), and decodes to the original dtype.

* ``fp16`` / ``bf16``: half-precision values (2 bytes); bf16 travels as its raw 16 bits in an
  ``int16`` tensor (numpy, and so the wire formats, have no bfloat16);
* ``int8``: symmetric round-to-nearest into [-127, 127] with one float32 scale per channel
  (``max |x| / 127``). A 2-D tensor's channels run along its shorter side (a LoRA ``A``
  ``[r, in]`` gets ``r`` scales, a ``B`` ``[out, r]`` also ``r``), so the scales cost
  ``4 / long side`` bytes per value; 1-D tensors get one scale, higher ones are taken as
  ``[shape[0], -1]``. About 0.26 of the float32 bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin

from .base import CodecConfig, Lossy

if TYPE_CHECKING:
    import torch

    from fedllm.messages import Params


class HalfCodec(Lossy):
    name = "fp16"

    def encode_tensor(self, name: str, x: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, Any]]:
        import torch

        return {name: x.to(torch.float16)}, {}

    def decode_tensor(self, name: str, tensors: Params, meta: dict[str, Any]) -> torch.Tensor:
        return tensors[name].float()


class BFloatCodec(Lossy):
    name = "bf16"

    def encode_tensor(self, name: str, x: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, Any]]:
        import torch

        return {name: x.to(torch.bfloat16).view(torch.int16)}, {}

    def decode_tensor(self, name: str, tensors: Params, meta: dict[str, Any]) -> torch.Tensor:
        import torch

        return tensors[name].view(torch.bfloat16).float()


class Int8Config(CodecConfig):
    axis: Literal["auto", "rows", "columns"] = Field(
        "auto", description="Channels of a 2-D tensor: its rows, its columns, or auto (along "
        "its shorter side: fewest scales).")


class Int8Codec(Lossy):
    name = "int8"

    def __init__(self, config: Int8Config):
        super().__init__(config)

    def encode_tensor(self, name: str, x: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, Any]]:
        import torch

        if x.dim() <= 1:
            m = x.reshape(1, -1)
            axis = 0
        else:
            m = x.reshape(x.shape[0], -1)
            axis = {"rows": 0, "columns": 1}.get(self.config.axis,
                                                 0 if m.shape[0] <= m.shape[1] else 1)
        amax = m.abs().amax(dim=1 - axis, keepdim=True)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        q = torch.round(m / scale).clamp_(-127, 127).to(torch.int8)
        return {name: q, f"{name}#scale": scale.reshape(-1).contiguous()}, {"axis": axis}

    def decode_tensor(self, name: str, tensors: Params, meta: dict[str, Any]) -> torch.Tensor:
        q = tensors[name].float()
        scale = tensors[f"{name}#scale"].float()
        return q * (scale.reshape(-1, 1) if meta["axis"] == 0 else scale.reshape(1, -1))


fp16 = Plugin(kind="codec", name="fp16", factory=HalfCodec, Config=CodecConfig,
              description="float16 values (0.5x the float32 bytes); uploads as changes.")
bf16 = Plugin(kind="codec", name="bf16", factory=BFloatCodec, Config=CodecConfig,
              description="bfloat16 values (0.5x the float32 bytes); uploads as changes.")
int8 = Plugin(kind="codec", name="int8", factory=Int8Codec, Config=Int8Config,
              description="int8 with per-channel float32 scales (~0.26x); uploads as changes.")
