"""lora passes the peft contract suite: exactly its tensors travel, its adapter loads."""

from __future__ import annotations

from fedllm.testing.contracts import PeftContract


class TestLora(PeftContract):
    name = "lora"


class TestLoraAllLinear(PeftContract):
    name = "lora"
    config = {"r": 4, "target_modules": "all-linear", "use_rslora": True}
