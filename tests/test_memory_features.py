"""The memory features a 7B client needs, each run on this CPU: gradient checkpointing,
QLoRA (4-bit NF4 base + LoRA), bf16 autocast, padding-free batches; and what the GPU-only
option (fp16) says on a CPU."""

from __future__ import annotations

import pytest
import torch

from fedllm.testing import call, run_quick


def _close(a: dict, b: dict, **tol) -> None:
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol)


def test_gradient_checkpointing_trains_the_same_adapter(tmp_path):
    plain = run_quick(tmp_path, "rounds=1", "evaluators=[]", name="plain")
    ckpt = run_quick(tmp_path, "rounds=1", "evaluators=[]", "train.gradient_checkpointing=true",
                     name="ckpt")
    base = ckpt.ctx.model.get_base_model()
    assert base.is_gradient_checkpointing and not base.config.use_cache
    # recomputing activations changes no number of the result
    _close(plain.globals["global"], ckpt.globals["global"], rtol=0, atol=1e-6)


def test_qlora_is_a_4bit_nf4_double_quant_base_with_lora(tmp_path):
    eng = run_quick(tmp_path, "rounds=1", "evaluators=[]", "model.quantization=4bit",
                    "train.gradient_checkpointing=true")
    layers = [m for m in eng.ctx.model.modules() if type(m).__name__ == "Linear4bit"]
    assert layers
    state = layers[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # double quantisation
    assert all(p.dtype == torch.float32 for p in eng.ctx.trainable.values())
    loss = eng.history[0]["train_loss"]
    assert loss == loss and loss > 0


def test_bf16_autocast_on_the_cpu(tmp_path):
    eng = run_quick(tmp_path, "rounds=1", "evaluators=[]", "runtime.mixed_precision=bf16")
    loss = eng.history[0]["train_loss"]
    assert loss == loss and loss > 0
    assert all(p.dtype == torch.float32 for p in eng.ctx.trainable.values())  # fp32 master


def test_padding_free_batches_have_the_padded_loss(tmp_path):
    from fedllm_tasks.sft import pack_batch, pad_batch

    eng = run_quick(tmp_path, "rounds=1", "evaluators=[]", "task.padding_free=true")
    ctx = eng.ctx
    examples = ctx.client_data(ctx.dataset.client_ids[0]).to_list()[:4]
    assert len({len(e["input_ids"]) for e in examples}) > 1  # lengths differ: padding exists
    task = ctx.plugins.one("task")
    ctx.model.eval()
    with torch.no_grad():
        padded = call(task, "fedllm_loss", ctx=ctx, model=ctx.model,
                      batch=pad_batch(examples, ctx.tokenizer.pad_token_id))[0]
        packed = call(task, "fedllm_loss", ctx=ctx, model=ctx.model,
                      batch=pack_batch(examples))[0]
    assert float(packed) == pytest.approx(float(padded), abs=1e-6)
    assert pack_batch(examples)["input_ids"].shape == (1, sum(len(e["input_ids"])
                                                               for e in examples))


def test_fp16_needs_a_gpu(tmp_path):
    from fedllm.errors import ConfigError

    with pytest.raises(ConfigError, match="runtime.mixed_precision: 'fp16' needs a CUDA GPU"):
        run_quick(tmp_path, "runtime.mixed_precision=fp16")
