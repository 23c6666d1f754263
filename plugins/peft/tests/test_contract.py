"""Every peft method passes the peft contract suite: exactly its tensors travel, its saved
adapter loads with ``PeftModel.from_pretrained`` and into a freshly wrapped model (``fedllm
eval``) to the same logits, and a bare adapter rebuilds the component's config."""

from __future__ import annotations

import pytest

from fedllm.testing.contracts import PeftContract


class TestLora(PeftContract):
    name = "lora"


class TestLoraAllLinear(PeftContract):
    name = "lora"
    config = {"r": 4, "target_modules": "all-linear", "use_rslora": True}


class TestLoraSomeLayers(PeftContract):
    name = "lora"
    config = {"r": 4, "layers_to_transform": [1]}


class TestDora(PeftContract):
    name = "dora"
    config = {"r": 4}


class TestPromptTuning(PeftContract):
    name = "prompt-tuning"
    config = {"num_virtual_tokens": 4}


class TestPromptTuningTextInit(PeftContract):
    name = "prompt-tuning"
    config = {"num_virtual_tokens": 4, "init": "text", "init_text": "Answer well."}


class TestPTuning(PeftContract):
    name = "p-tuning"
    config = {"num_virtual_tokens": 4, "encoder_hidden_size": 32}


class TestPTuningLSTM(PeftContract):
    name = "p-tuning"
    config = {"num_virtual_tokens": 4, "encoder": "LSTM", "encoder_hidden_size": 32}


class TestPrefixTuning(PeftContract):
    name = "prefix-tuning"
    config = {"num_virtual_tokens": 4}


class TestPrefixTuningProjected(PeftContract):
    name = "prefix-tuning"
    config = {"num_virtual_tokens": 4, "prefix_projection": True, "encoder_hidden_size": 32}


class TestIA3(PeftContract):
    name = "ia3"


class TestLoHa(PeftContract):
    name = "loha"
    config = {"r": 4}


class TestLoKr(PeftContract):
    name = "lokr"
    config = {"r": 4}


class TestVera(PeftContract):
    name = "vera"
    config = {"r": 32}


class TestLNTuning(PeftContract):
    name = "ln-tuning"


class TestFourierFT(PeftContract):
    name = "fourierft"
    config = {"n_frequency": 64}


class TestOFT(PeftContract):
    name = "oft"
    config = {"block_size": 16}


class _OnTiny4(PeftContract):
    """Offsite-tuning needs a middle to drop: the tiny model with 4 blocks."""

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, fedllm_home):
        from fedllm.testing.contracts import _fresh_ctx, _section
        from fedllm.tiny import TINY_VERSION, ensure_tiny

        path = ensure_tiny(fedllm_home / "models" / f"tiny4-{TINY_VERSION}", num_hidden_layers=4)
        return _fresh_ctx(*_section("peft", cls.name, cls.config), f"model.name_or_path={path}")


class TestOffsite(_OnTiny4):
    name = "offsite"
    config = {"adapter_layers": 1, "drop": 0.5}


class TestOffsiteLora(_OnTiny4):
    name = "offsite"
    config = {"adapter_layers": 1, "drop": 0.5, "tune": "lora", "r": 4}
