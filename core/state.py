"""Per-client state that persists across rounds without living in RAM.

Control-variate algorithms keep one set of tensors per client for the whole run. The store
writes each client's state to its own safetensors file, tagged with the round that produced
it, and keeps only the newest file a checkpoint may still need. So memory is one client's
state at a time, and resuming from a checkpoint at round ``r`` sees exactly the state that
existed at the end of round ``r`` (files from later rounds are discarded).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_FILE = re.compile(r"^r(\d+)\.safetensors$")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"%{ord(m.group()):02x}", name)


class ClientStateStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpointed_round = -1
        self.kept_rounds: list[int] = []

    def _dir(self, cohort: str, client_id: str) -> Path:
        return self.root / _safe(cohort) / _safe(client_id)

    def _files(self, d: Path) -> list[tuple[int, Path]]:
        if not d.is_dir():
            return []
        out = [(int(m.group(1)), d / f) for f in os.listdir(d) if (m := _FILE.match(f))]
        return sorted(out)

    def load(self, cohort: str, client_id: str) -> dict[str, torch.Tensor] | None:
        """The client's newest state, or ``None`` if it has none yet."""
        from safetensors.torch import load_file

        files = self._files(self._dir(cohort, client_id))
        return load_file(str(files[-1][1])) if files else None

    def save(self, cohort: str, client_id: str, round: int,
             tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        d = self._dir(cohort, client_id)
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        os.close(fd)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.replace(tmp, d / f"r{round}.safetensors")
        self._prune(d)

    def _prune(self, d: Path) -> None:
        files = self._files(d)
        # keep the newest file, and for each kept checkpoint the newest one at or before it
        keep = {files[-1][1]} if files else set()
        for ckpt in self.kept_rounds or [self.checkpointed_round]:
            covered = [p for r, p in files if r <= ckpt]
            if covered:
                keep.add(covered[-1])
        for _, p in files:
            if p not in keep:
                p.unlink(missing_ok=True)

    def mark_checkpoint(self, round: int | list[int]) -> None:
        """The checkpoints a resume may fall back to (their rounds): their states are kept."""
        rounds = [round] if isinstance(round, int) else sorted(round)
        self.kept_rounds = rounds
        self.checkpointed_round = rounds[-1] if rounds else -1

    def forget_after(self, cohort: str, client_id: str, round: int) -> None:
        """Drop the client's state written in ``round`` or later (a resumed coordinator runs
        that round again)."""
        for r, p in self._files(self._dir(cohort, client_id)):
            if r >= round:
                p.unlink(missing_ok=True)

    def rollback(self, round: int) -> None:
        """Forget every state written after ``round`` (resume from that round's checkpoint)."""
        self.checkpointed_round = round
        self.kept_rounds = [r for r in self.kept_rounds if r <= round] or [round]
        if not self.root.is_dir():
            return
        for cohort in self.root.iterdir():
            for client in cohort.iterdir() if cohort.is_dir() else []:
                for r, p in self._files(client):
                    if r > round:
                        p.unlink()
                for tmp in client.glob(".tmp-*"):
                    tmp.unlink()
