"""The core's own pre-run checks: what the run asks of the hardware and of the federation.

Components add theirs through ``fedllm_check``; :func:`fedllm.context.prepare` reports every
problem together, before the model's weights load and before the run directory exists.
torch is imported only when the config asks for something a GPU decides.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RunContext


def hardware_problems(ctx: RunContext) -> list[str]:
    cfg = ctx.config
    rt, model = cfg.runtime, cfg.model
    out: list[str] = []
    if model.quantization != "none" and importlib.util.find_spec("bitsandbytes") is None:
        out.append(f"model.quantization: {model.quantization!r} needs bitsandbytes, which is "
                   "not installed (pip install bitsandbytes); allowed without it: 'none'")
    wants_gpu = rt.device.startswith("cuda")
    if not (wants_gpu or rt.mixed_precision != "no" or model.dtype in ("bfloat16", "float16")):
        return out
    import torch

    cuda = torch.cuda.is_available()
    if wants_gpu and not cuda:
        out.append(f"runtime.device: {rt.device!r} but no CUDA GPU is available here; "
                   "allowed: 'auto' or 'cpu'")
    elif wants_gpu and ":" in rt.device:
        index = int(rt.device.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            out.append(f"runtime.device: {rt.device!r} but only {torch.cuda.device_count()} "
                       f"GPU(s) are visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    on_gpu = cuda and rt.device != "cpu"
    if rt.mixed_precision == "fp16" and not on_gpu:
        out.append("runtime.mixed_precision: 'fp16' needs a CUDA GPU; on the CPU use 'bf16' "
                   "or 'no'")
    if rt.mixed_precision == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        out.append("runtime.mixed_precision: 'bf16' is not supported by this GPU; use 'fp16' "
                   "or 'no'")
    return out


def federation_problems(ctx: RunContext) -> list[str]:
    """What the sampling asks of the dataset (known once the dataset is loaded)."""
    if ctx.dataset is None:
        return []
    out = []
    ids = ctx.dataset.client_ids
    if len(set(ids)) != len(ids):
        dup = sorted({c for c in ids if ids.count(c) > 1})
        out.append(f"dataset: client id(s) {dup[:5]} appear more than once")
    return out


def coverage_problems(ctx: RunContext) -> list[str]:
    """Privacy must cover everything a client uploads: an algorithm that sends tensors in
    ``update.extras`` (and uses them on the server) needs privacy components that cover them."""
    algorithms = [a for a in ctx.plugins.of("algorithm") if a.cap("uploads_extras")]
    out = []
    for a in algorithms:
        for p in ctx.plugins.of("privacy"):
            if not p.cap("covers_extras"):
                out.append(f"privacy: {p.name!r} privatizes the clients' adapter updates but "
                           f"not the tensors algorithm {a.name!r} also uploads in "
                           "update.extras, so its guarantee would not cover what clients "
                           f"send; use {p.name!r} with an algorithm that uploads no extras")
    return out


def core_problems(ctx: RunContext) -> list[str]:
    from .trackers import problems as tracker_problems

    return (hardware_problems(ctx) + federation_problems(ctx) + coverage_problems(ctx)
            + tracker_problems(ctx.config.runtime.trackers))
