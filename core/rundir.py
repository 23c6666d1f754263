"""The run directory: resolved config, metrics, checkpoints and the final adapter.

Layout of ``runs/<name>/``::

    config.yaml          resolved config (every default, plugin versions)
    metrics.jsonl        one JSON record per round
    checkpoints/round-000003/{state.safetensors,meta.json,checksums.json}  (after round 3)
    client_state/        per-client persistent state (see state.py)
    adapter/             final global adapter, standard PEFT format (one cohort)
    adapters/<cohort>/   ... one per cohort when the sampler defines several

Every file that must never be seen half-written goes through a temp name and a rename. Each
checkpoint records the sha256 of its files (``checksums.json``, written last); ``--resume``
verifies them and falls back to the newest intact checkpoint (two are kept by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import RunDirError
from .guard import finite_json
from .paths import atomic_dir, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import torch

CKPT_PREFIX = "round-"
CHECKSUMS = "checksums.json"
CKPT_FILES = ("state.safetensors", "meta.json")
#: 2: rounds count from 1 in directory names, meta.json and metrics.jsonl (1: from 0)
CKPT_FORMAT = 2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -- creation / validation ----------------------------------------------------------

    @classmethod
    def create(cls, path: Path, resolved_config: dict[str, Any]) -> RunDir:
        path = Path(path)
        if path.exists():
            raise RunDirError(f"run directory {str(path)!r} already exists; choose another "
                              "name (name=...) or continue it with --resume")
        try:
            with atomic_dir(path, replace=False) as tmp:
                (tmp / "config.yaml").write_text(yaml.safe_dump(resolved_config,
                                                                sort_keys=False))
                (tmp / "metrics.jsonl").touch()
        except OSError as exc:
            raise RunDirError(f"output_dir: cannot create the run directory {str(path)!r}: "
                              f"{exc.strerror or exc} (choose a writable output_dir)") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"--resume {str(path)!r}: no such directory")
        if not (path / "config.yaml").is_file() or not (path / "metrics.jsonl").is_file():
            raise RunDirError(f"--resume {str(path)!r}: not a fedllm run directory "
                              "(no config.yaml and metrics.jsonl)")
        return cls(path)

    def write_config(self, resolved_config: dict[str, Any]) -> None:
        """Replace config.yaml (atomically), e.g. when ``--resume --set rounds=N`` extends it."""
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(resolved_config,
                                                                    sort_keys=False))

    def config(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RunDirError(f"{self.path / 'config.yaml'}: unreadable ({exc}); the run "
                              "cannot be resumed without its config") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{self.path / 'config.yaml'}: not a mapping; the run cannot be "
                              "resumed without its config")
        return data

    # -- metrics --------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(finite_json(record), default=float, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        """The round records; a torn last line (a crash mid-write) is dropped, any other
        unreadable line is an error naming it."""
        lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8",
                                                        errors="replace").splitlines()
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    self.torn_metrics = True
                    continue
                raise RunDirError(f"{self.path / 'metrics.jsonl'}: line {i + 1} is not JSON; "
                                  "fix or remove it to resume") from None
        return out

    torn_metrics = False

    def truncate_metrics(self, last_round: int) -> None:
        """Drop records of rounds after round number ``last_round`` (they will be
        recomputed); records count rounds from 1."""
        keep = [r for r in self.metrics() if r.get("round", -1) <= last_round]
        atomic_write_text(self.path / "metrics.jsonl",
                          "".join(json.dumps(r, default=float) + "\n" for r in keep))

    # -- checkpoints ----------------------------------------------------------------------

    @property
    def ckpt_root(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """Checkpoint directories, oldest first (complete or not: see ``verify``)."""
        if not self.ckpt_root.is_dir():
            return []
        done = [p for p in self.ckpt_root.iterdir()
                if p.is_dir() and p.name.startswith(CKPT_PREFIX)
                and p.name[len(CKPT_PREFIX):].isdigit()]
        return sorted(done, key=lambda p: int(p.name[len(CKPT_PREFIX):]))

    def checkpoint_rounds(self) -> list[int]:
        """The 0-based round indices of the checkpoints (``round-000003`` is index 2)."""
        return [int(p.name[len(CKPT_PREFIX):]) - 1 for p in self.checkpoints()]

    def save_checkpoint(self, round: int, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any], keep: int) -> Path:
        """Write the checkpoint after the round of 0-based index ``round`` (directory and
        ``meta.json`` count from 1, as metrics do) through a temp dir + rename, with the sha256
        of each of its files in ``checksums.json``, and keep the newest ``keep``."""
        from safetensors.torch import save_file

        final = self.ckpt_root / f"{CKPT_PREFIX}{round + 1:06d}"
        with atomic_dir(final) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                      str(tmp / "state.safetensors"))
            atomic_write_json(tmp / "meta.json", {**meta, "round": round + 1,
                                                  "format": CKPT_FORMAT})
            atomic_write_json(tmp / CHECKSUMS, {f: _sha256(tmp / f) for f in CKPT_FILES})
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def verify(self, ckpt: Path) -> str | None:
        """Why checkpoint ``ckpt`` cannot be trusted (missing file, checksum mismatch,
        unparseable metadata), or ``None`` when it is intact."""
        try:
            sums = json.loads((ckpt / CHECKSUMS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{CHECKSUMS} is missing or unreadable (written last: the save did not finish)"
        for f in CKPT_FILES:
            if not (ckpt / f).is_file():
                return f"{f} is missing"
            if _sha256(ckpt / f) != sums.get(f):
                return f"{f} does not match its checksum (damaged on disk)"
        try:
            json.loads((ckpt / "meta.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            return f"meta.json is not JSON ({exc})"
        return None

    def latest_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                         list[str]] | None:
        """The newest intact checkpoint's ``(tensors, meta, skipped)``, where ``skipped``
        explains each newer checkpoint that was damaged; ``None`` when there is none at all.
        Raises when checkpoints exist but none is intact."""
        from safetensors.torch import load_file

        for stale in self.ckpt_root.glob(".tmp-*") if self.ckpt_root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        skipped: list[str] = []
        for ckpt in reversed(self.checkpoints()):
            why = self.verify(ckpt)
            if why is None:
                try:
                    tensors = load_file(str(ckpt / "state.safetensors"))
                except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not raised
                    why = f"state.safetensors does not load ({exc})"
                else:
                    meta = json.loads((ckpt / "meta.json").read_text(encoding="utf-8"))
                    return tensors, meta, skipped
            skipped.append(f"{ckpt.name}: {why}")
        if skipped:
            raise RunDirError(f"{self.path}: no intact checkpoint to resume from ("
                              + "; ".join(skipped) + "); the run cannot continue")
        return None

    # -- final adapter --------------------------------------------------------------------

    def adapter_dir(self, cohort: str, single: bool) -> Path:
        return self.path / "adapter" if single else self.path / "adapters" / cohort

    def save_adapter(self, model: Any, target: Path, *, tokenizer: Any = None,
                     base_model: str | None = None, revision: str | None = None,
                     card: str | None = None) -> None:
        """``model.save_pretrained`` into a temp dir, then rename over ``target``: with the
        tokenizer (what the adapter was trained with, chat template included), the base model
        named as the user named it (peft would write the local cache path) and a model card
        in place of peft's blank template."""
        with atomic_dir(target) as tmp:
            model.save_pretrained(str(tmp))
            if base_model is not None:
                path = tmp / "adapter_config.json"
                conf = json.loads(path.read_text(encoding="utf-8"))
                conf["base_model_name_or_path"] = base_model
                conf["revision"] = revision
                atomic_write_json(path, conf)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            if card is not None:
                atomic_write_text(tmp / "README.md", card)
