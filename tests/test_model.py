"""Model loading: local paths in place of hub ids, quantised loading, clear failures."""

import pytest
import torch

from fedllm.tiny import ensure_tiny
from tests.helpers import run_quick


def test_local_model_directory_works_like_a_hub_id(tmp_path):
    path = ensure_tiny(tmp_path / "my-model", hidden_size=64, intermediate_size=128)
    eng = run_quick(tmp_path, f"model.name_or_path={path}", "rounds=1")
    assert eng.ctx.model.config.hidden_size == 64
    cfg = (eng.run_dir.path / "adapter" / "adapter_config.json").read_text()
    assert str(path) in cfg  # the adapter records its base model


def test_unknown_model_fails_clearly(tmp_path):
    from fedllm.errors import FedLLMError

    with pytest.raises(FedLLMError, match="model.name_or_path: 'no-org/no-model' is neither a "
                       "local directory nor in the"):
        run_quick(tmp_path, "model.name_or_path=no-org/no-model")
    assert not (tmp_path / "r").exists()


def test_8bit_base_model_trains_lora(tmp_path):
    eng = run_quick(tmp_path, "model.quantization=8bit", "rounds=1")
    kinds = {type(m).__name__ for m in eng.ctx.model.modules()}
    assert "Linear8bitLt" in kinds
    loss = eng.history[0]["train_loss"]
    assert loss == loss and loss > 0  # finite
    assert all(p.dtype == torch.float32 for p in eng.ctx.trainable.values())
