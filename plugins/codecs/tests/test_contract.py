"""Every codec passes the codec contract suite: decode inverts encode (exactly for the
lossless ones), deterministically, with wire-ready arrays, and runs resume bit-exactly."""

from __future__ import annotations

from fedllm.testing.contracts import CodecContract


class TestFp16(CodecContract):
    name = "fp16"
    max_rel_error = 1e-3


class TestBf16(CodecContract):
    name = "bf16"
    max_rel_error = 1e-2


class TestInt8(CodecContract):
    name = "int8"
    max_rel_error = 1e-2


class TestInt8Rows(CodecContract):
    name = "int8"
    config = {"axis": "rows", "direction": "up"}
    max_rel_error = 1e-2


class TestTopK(CodecContract):
    name = "topk"
    max_rel_error = 1.0  # 10% of a dense change: most of it waits in the residual


class TestTopKNoFeedback(CodecContract):
    name = "topk"
    config = {"fraction": 0.5, "error_feedback": False, "values": "bfloat16"}
    max_rel_error = 1.0


class TestDeflate(CodecContract):
    name = "deflate"


class TestZstd(CodecContract):
    name = "zstd"
    config = {"level": 5}
