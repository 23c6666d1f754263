"""The run directory: resolved config, metrics, checkpoints and the final adapter.

Layout of ``runs/<name>/``::

    config.yaml          resolved config (every default, plugin versions)
    metrics.jsonl        one JSON record per round
    checkpoints/round-000003/{state.safetensors,meta.json}
    client_state/        per-client persistent state (see state.py)
    adapter/             final global adapter, standard PEFT format (one cohort)
    adapters/<cohort>/   ... one per cohort when the sampler defines several

Every file that must never be seen half-written goes through a temp name and a rename.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from .errors import RunDirError
from .paths import atomic_dir, atomic_write_json, atomic_write_text

CKPT_PREFIX = "round-"


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -- creation / validation ----------------------------------------------------------

    @classmethod
    def create(cls, path: Path, resolved_config: dict[str, Any]) -> "RunDir":
        path = Path(path)
        if path.exists():
            raise RunDirError(f"run directory {str(path)!r} already exists; choose another "
                              "name (name=...) or continue it with --resume")
        with atomic_dir(path, replace=False) as tmp:
            (tmp / "config.yaml").write_text(yaml.safe_dump(resolved_config, sort_keys=False))
            (tmp / "metrics.jsonl").touch()
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"--resume {str(path)!r}: no such directory")
        if not (path / "config.yaml").is_file() or not (path / "metrics.jsonl").is_file():
            raise RunDirError(f"--resume {str(path)!r}: not a fedllm run directory "
                              "(no config.yaml and metrics.jsonl)")
        return cls(path)

    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "config.yaml").read_text()) or {}

    # -- metrics --------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def truncate_metrics(self, last_round: int) -> None:
        """Drop records of rounds after ``last_round`` (they will be recomputed)."""
        keep = [r for r in self.metrics() if r.get("round", -1) <= last_round]
        atomic_write_text(self.path / "metrics.jsonl",
                          "".join(json.dumps(r, default=float) + "\n" for r in keep))

    # -- checkpoints ----------------------------------------------------------------------

    @property
    def ckpt_root(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[Path]:
        if not self.ckpt_root.is_dir():
            return []
        done = [p for p in self.ckpt_root.iterdir()
                if p.name.startswith(CKPT_PREFIX) and (p / "meta.json").is_file()]
        return sorted(done, key=lambda p: int(p.name[len(CKPT_PREFIX):]))

    def save_checkpoint(self, round: int, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any], keep: int) -> Path:
        final = self.ckpt_root / f"{CKPT_PREFIX}{round:06d}"
        with atomic_dir(final) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                      str(tmp / "state.safetensors"))
            atomic_write_json(tmp / "meta.json", {**meta, "round": round})
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        for stale in self.ckpt_root.glob(".tmp-*") if self.ckpt_root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        ckpts = self.checkpoints()
        if not ckpts:
            return None
        last = ckpts[-1]
        meta = json.loads((last / "meta.json").read_text())
        return load_file(str(last / "state.safetensors")), meta

    # -- final adapter --------------------------------------------------------------------

    def adapter_dir(self, cohort: str, single: bool) -> Path:
        return self.path / "adapter" if single else self.path / "adapters" / cohort

    def save_adapter(self, model: Any, target: Path) -> None:
        """``model.save_pretrained`` into a temp dir, then rename over ``target``."""
        with atomic_dir(target) as tmp:
            model.save_pretrained(str(tmp))
