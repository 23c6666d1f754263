"""The base model: described from its config before anything loads, then loaded once per
process and placed by accelerate."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ModelConfig, RuntimeConfig
from .errors import ConfigError, FedLLMError
from .tiny import TINY_SHAPE, ensure_tiny

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelInfo:
    """What the model's ``config.json`` says, read without loading weights or torch (fields
    are ``None`` when the config could not be read, e.g. an uncached hub id offline)."""

    name_or_path: str
    local: bool
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def max_position_embeddings(self) -> int | None:
        return self.config.get("max_position_embeddings")

    @property
    def num_hidden_layers(self) -> int | None:
        return self.config.get("num_hidden_layers")

    @property
    def hidden_size(self) -> int | None:
        return self.config.get("hidden_size")

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")


def describe_model(cfg: ModelConfig) -> ModelInfo:
    """Read the model's config (local directory, the hub cache, or a small download) or raise
    a clear error naming ``model.name_or_path``."""
    name = cfg.name_or_path
    if name == "tiny":
        return ModelInfo(name, True, {"model_type": "llama", **TINY_SHAPE})
    p = Path(name).expanduser()
    if p.exists() or name.startswith((".", "/", "~")):
        if not (p / "config.json").is_file():
            what = "does not exist" if not p.exists() else "has no config.json"
            raise ConfigError(f"model.name_or_path: {name!r} {what} (a local model directory "
                              "needs config.json; or give a Hugging Face hub id)")
        return ModelInfo(name, True, _read_json(p / "config.json", name))
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(name, "config.json", revision=cfg.revision)
    if isinstance(hit, str):
        return ModelInfo(name, False, _read_json(Path(hit), name))
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError(f"model.name_or_path: {name!r} is neither a local directory nor in "
                          "the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it")
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(name, "config.json", revision=cfg.revision)
    except Exception as exc:  # noqa: BLE001 - any hub failure is the same user problem
        raise ConfigError(f"model.name_or_path: cannot read {name!r} from the hub: "
                          f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return ModelInfo(name, False, _read_json(Path(path), name))


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.name_or_path: {name!r}: config.json is unreadable: "
                          f"{exc}") from None
    # multimodal configs nest the language model's fields
    return {**data.get("text_config", {}), **data} if isinstance(data, dict) else {}


def make_accelerator(runtime: RuntimeConfig):
    """One ``Accelerator`` per process (accelerate's state is a process-wide singleton)."""
    import torch
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
    import torch

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
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type,
                              bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=compute)


def load_model(cfg: ModelConfig, device: torch.device, *,
               gradient_checkpointing: bool = False) -> Any:
    """The frozen base model on ``device`` (quantised with bitsandbytes if asked; with
    gradient checkpointing, non-reentrant, and input grads enabled so that checkpointed
    blocks of a frozen base still carry the adapter's gradients)."""
    import torch
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
    ckpt_kwargs = {"use_reentrant": False}
    if q is None:
        model.to(device)
        if gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=ckpt_kwargs)
    else:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs=ckpt_kwargs)
    if gradient_checkpointing:
        model.config.use_cache = False  # a KV cache is useless in training and breaks recompute
        model.enable_input_require_grads()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
