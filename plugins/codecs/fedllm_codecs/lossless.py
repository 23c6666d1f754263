"""Lossless codecs (FS-LLM's compression operator): DEFLATE (zlib, standard library) and
zstd (the ``zstandard`` package: ``pip install 'fedllm-codecs[zstd]'``). They pack a message
part's tensors (as the lossy codecs left them) into one safetensors blob and compress it, so
they come last in the chain; decode ∘ encode is the identity, bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin, hookimpl
from fedllm.errors import ConfigError

from .base import BaseCodec, CodecConfig

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.messages import Params

BLOB = "blob"


class DeflateConfig(CodecConfig):
    level: int = Field(6, ge=0, le=9, description="zlib compression level (0-9).")


class ZstdConfig(CodecConfig):
    level: int = Field(3, ge=1, le=22, description="zstd compression level (1-22).")


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise ConfigError("codecs: 'zstd' needs the zstandard package, which is not installed: "
                          "pip install 'fedllm-codecs[zstd]' (or use the deflate codec)") from None
    return zstandard


class Lossless(BaseCodec):
    lossless = True

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decompress(self, data: bytes) -> bytes:
        raise NotImplementedError

    @hookimpl
    def fedllm_codec_encode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None,
                            tensors: Params, reference: Params | None
                            ) -> tuple[Params, dict[str, Any]] | None:
        import safetensors.torch
        import torch

        if not self.applies(direction) or not tensors:
            return None
        raw = safetensors.torch.save({k: v.detach().contiguous().cpu()
                                      for k, v in tensors.items()})
        blob = self.compress(raw)
        return {BLOB: torch.frombuffer(bytearray(blob), dtype=torch.uint8)}, {"size": len(raw)}

    @hookimpl
    def fedllm_codec_decode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None, tensors: Params,
                            meta: dict[str, Any], reference: Params | None) -> Params:
        import safetensors.torch

        return dict(safetensors.torch.load(self.decompress(tensors[BLOB].numpy().tobytes())))


class Deflate(Lossless):
    name = "deflate"

    def compress(self, data: bytes) -> bytes:
        import zlib

        return zlib.compress(data, self.config.level)

    def decompress(self, data: bytes) -> bytes:
        import zlib

        return zlib.decompress(data)


class Zstd(Lossless):
    name = "zstd"

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        problems = list(super().fedllm_check(ctx=ctx) or [])
        try:
            _zstd()
        except ConfigError as exc:
            problems.append(str(exc))
        return problems

    def compress(self, data: bytes) -> bytes:
        return _zstd().ZstdCompressor(level=self.config.level).compress(data)

    def decompress(self, data: bytes) -> bytes:
        return _zstd().ZstdDecompressor().decompress(data)


deflate = Plugin(kind="codec", name="deflate", factory=Deflate, Config=DeflateConfig,
                 description="DEFLATE (zlib) of the whole message part; lossless, put it last.")
zstd = Plugin(kind="codec", name="zstd", factory=Zstd, Config=ZstdConfig,
              description="zstd of the whole message part (needs zstandard); lossless, put it "
              "last.")
