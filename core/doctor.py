"""``fedllm doctor``: the stack's versions, the hardware, and what follows from them."""

from __future__ import annotations

import importlib.metadata as md
import os
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table

STACK = ["fedllm", "torch", "transformers", "peft", "trl", "accelerate", "datasets",
         "bitsandbytes", "pluggy", "pydantic", "flwr", "opacus", "flwr-datasets"]


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def hardware() -> dict[str, object]:
    import torch

    info: dict[str, Any] = {
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "gpus": [],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if info["cuda"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append(f"{p.name} ({p.total_memory / 2**30:.0f} GiB)")
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["bf16"] = "CPU autocast only (slow)"
    try:
        import bitsandbytes as bnb  # noqa: F401

        info["bitsandbytes"] = "ok (8-bit and 4-bit loading)"
    except Exception as exc:  # noqa: BLE001
        info["bitsandbytes"] = f"unavailable: {type(exc).__name__}: {exc}"
    return info


def run_plan(config: str | None, overrides: list[str]) -> Table:
    """What a run with this config will use (resolved exactly as `fedllm run` resolves it)."""
    import torch

    from .config import build_config, resolve

    resolved = resolve(build_config(config, overrides))
    cfg = resolved.run
    rt, m, tr = cfg.runtime, cfg.model, cfg.train
    cuda = torch.cuda.is_available()
    device = rt.device if rt.device != "auto" else ("cuda" if cuda else "cpu")
    t = Table(title="this run will use")
    t.add_column("what")
    t.add_column("value")
    rows = {
        "model": m.name_or_path,
        "device": device + (f" ({torch.cuda.get_device_name(0)})" if cuda and device != "cpu"
                            else ""),
        "base dtype": m.dtype,
        "compute": {"no": "float32", "bf16": "bfloat16 autocast",
                    "fp16": "float16 autocast"}.get(rt.mixed_precision, rt.mixed_precision),
        "quantization": m.quantization,
        "gradient checkpointing": str(getattr(tr, "gradient_checkpointing", False)),
        "backend": rt.backend + (f" {rt.backend_options}" if rt.backend_options else ""),
        "threads": str(rt.threads or torch.get_num_threads()),
        "clients at once": _concurrency(rt.backend, rt.backend_options),
    }
    for k, v in rows.items():
        t.add_row(k, str(v))
    return t


def _concurrency(backend: str, options: dict[str, Any]) -> str:
    """How many clients of a round train at the same time, as the backend will run them."""
    if backend == "in-process":
        return "1 (one after another on the shared base model)"
    if "workers" in options:
        return f"{options['workers']} (backend_options.workers)"
    return "set by the backend (backend_options.workers, or one per node)"


def report(config: str | None = None, overrides: Sequence[str] = ()) -> Group:
    versions = Table(title="stack")
    versions.add_column("package")
    versions.add_column("version")
    for d in STACK:
        versions.add_row(d, _version(d))
    hw: dict[str, Any] = hardware()
    hwt = Table(title="hardware")
    hwt.add_column("what")
    hwt.add_column("found")
    for k, v in hw.items():
        hwt.add_row(k, ", ".join(v) if isinstance(v, list) else str(v))
    notes = Table(title="what follows")
    notes.add_column("note")
    if not hw["cuda"]:
        notes.add_row("No GPU: training runs on the CPU; use the tiny model or small models.")
        notes.add_row("runtime.mixed_precision=bf16 works on CPU but is usually slower than fp32.")
    if hw["cpu_count"] and hw["cpu_threads"] and hw["cpu_threads"] > 1:
        notes.add_row("Several processes on this machine (Flower nodes, pytest-xdist): set "
                      "runtime.threads=1 or OMP_NUM_THREADS=1 to avoid oversubscription.")
    if str(hw["bitsandbytes"]).startswith("unavailable"):
        notes.add_row("model.quantization 8bit/4bit is disabled (bitsandbytes unavailable).")
    if _version("flwr") == "not installed":
        notes.add_row("Flower not installed: serve/join and the flower backends are disabled.")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        notes.add_row("HF_HUB_OFFLINE=1: only local model/dataset paths and caches work.")
    return Group(versions, hwt, notes, run_plan(config, list(overrides)))
