"""FedLLM-Bench's pre-split release: one JSON object ``{client_id: [sample, ...]}``.

E.g. ``data/Fed-Aya/aya_38c_25k.json``. Samples pass through as they are (``instruction`` /
``response`` for SFT, ``prompt`` / ``chosen`` / ``rejected`` for DPO); ``columns`` renames keys
for files that use other names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from fedllm import Dataset, Plugin, PluginConfig, hookimpl
from fedllm.data import from_client_samples
from fedllm.errors import DataError

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class BenchJsonConfig(PluginConfig):
    path: str = Field(..., description="The release's JSON file: {client_id: [sample, ...]}.")
    heldout: float = Field(0, ge=0, description="Held-out samples per client: a count (>= 1) or "
                           "a fraction (< 1).")
    columns: dict[str, str] = Field({}, description="Rename sample keys, e.g. {output: response}.")
    seed: int = Field(0, ge=0, description="Seed of the held-out draw.")
    language_field: str | None = Field(
        "language", description="Sample key whose (first) value becomes the client's "
        "'language' metadata, when present.")


def load_client_json(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"dataset.path: {path!r} does not exist")
    duplicates: list[str] = []

    def keep_pairs(pairs):
        seen: dict = {}
        for k, v in pairs:
            if k in seen:
                duplicates.append(k)
            seen[k] = v
        return seen

    try:
        data = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=keep_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset.path: {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"dataset.path: {path!r} must hold an object {{client_id: [samples]}}, "
                        f"got a {type(data).__name__}")
    clients = [k for k in duplicates if k in data]
    if clients:
        raise DataError(f"dataset.path: {path!r} names client {clients[0]!r} more than once; "
                        "a JSON object keeps only the last, so that client's other samples "
                        "would vanish: merge them under one key")
    return data


class BenchJson(Dataset):
    def __init__(self, config: BenchJsonConfig):
        self.config = config

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        if not Path(self.config.path).is_file():
            return [f"dataset.path: {self.config.path!r} does not exist (the release's JSON "
                    "file {client_id: [samples]})"]
        return None

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        c = self.config
        data = load_client_json(c.path)
        if c.columns:
            data = {cid: [{c.columns.get(k, k): v for k, v in s.items()}
                          if isinstance(s, dict) else s for s in samples]
                    for cid, samples in data.items()}
        meta = {}
        if c.language_field:
            for cid, samples in data.items():
                if samples and isinstance(samples[0], dict) and c.language_field in samples[0]:
                    meta[str(cid)] = {"language": samples[0][c.language_field]}
        st = Path(c.path).stat()
        heldout = int(c.heldout) if c.heldout >= 1 else c.heldout
        return from_client_samples(
            data, heldout=heldout, seed=c.seed, metadata=meta, source=f"dataset.path {c.path!r}",
            fingerprint_parts=[str(Path(c.path).resolve()), st.st_size, st.st_mtime_ns,
                               c.model_dump(mode="json")])


plugin = Plugin(kind="dataset", name="fedllm-bench-json", factory=BenchJson,
                Config=BenchJsonConfig,
                description="FedLLM-Bench's pre-split JSON release ({client_id: [samples]}).")
