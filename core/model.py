"""Loading the frozen base model once per process, placed by accelerate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig, RuntimeConfig
from .errors import FedLLMError
from .tiny import ensure_tiny


def quiet_libraries() -> None:
    """Silence progress bars and known-harmless notices that would bury the run's own output
    (STACK.md P11); real warnings still show."""
    import logging
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # Printed on every `import peft` on CPUs with AVX512-BF16; `fedllm doctor` reports it.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def make_accelerator(runtime: RuntimeConfig):
    """One ``Accelerator`` per process (accelerate's state is a process-wide singleton)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    dev = runtime.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise FedLLMError(f"runtime.device: {dev!r} requested but no CUDA GPU is available "
                          "(use 'auto' or 'cpu')")
    if dev.startswith("cuda:"):
        torch.cuda.set_device(int(dev.split(":", 1)[1]))
    if runtime.mixed_precision == "bf16":
        on_gpu = dev != "cpu" and torch.cuda.is_available()
        if on_gpu and not torch.cuda.is_bf16_supported():
            raise FedLLMError("runtime.mixed_precision: 'bf16' is not supported by this GPU "
                              "(use 'no')")
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=(dev == "cpu"), mixed_precision=runtime.mixed_precision)


def resolve_path(cfg: ModelConfig) -> str:
    return str(ensure_tiny()) if cfg.name_or_path == "tiny" else cfg.name_or_path


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    path = resolve_path(cfg)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.revision,
                                            trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise FedLLMError(_not_found(cfg, exc)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _not_found(cfg: ModelConfig, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    where = "a local directory" if Path(cfg.name_or_path).exists() else (
        "a hub id (offline mode is on: HF_HUB_OFFLINE=1)" if offline else "a hub id")
    return f"model.name_or_path: cannot load {cfg.name_or_path!r} as {where}: {exc}"


def quantization_config(cfg: ModelConfig, device: torch.device):
    if cfg.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as exc:  # noqa: BLE001
        raise FedLLMError(f"model.quantization: {cfg.quantization!r} needs bitsandbytes, which "
                          f"failed to import: {exc}. Use quantization: none.") from None
    if device.type not in ("cpu", "cuda", "xpu"):
        raise FedLLMError(f"model.quantization: {cfg.quantization!r} is not supported by "
                          f"bitsandbytes on device {device.type!r}; use quantization: none")
    compute = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) \
        else torch.float32
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=compute)


def load_model(cfg: ModelConfig, device: torch.device) -> Any:
    """The frozen base model on ``device`` (quantised with bitsandbytes if asked)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    if cfg.dtype != "auto":
        kwargs["dtype"] = getattr(torch, cfg.dtype)
    else:
        kwargs["dtype"] = "auto"
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    q = quantization_config(cfg, device)
    if q is not None:
        kwargs["quantization_config"] = q
        kwargs["device_map"] = {"": device.index if device.type == "cuda" else str(device)}
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_path(cfg), **kwargs)
    except (OSError, ValueError) as exc:
        raise FedLLMError(_not_found(cfg, exc)) from None
    if q is None:
        model.to(device)
    else:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
