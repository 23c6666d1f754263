"""The federated dataset contract that dataset plugins return, and helpers to build one.

A :class:`FederatedDataset` is two ``datasets.Dataset`` tables (train and held-out), one row per
sample with a ``client_id`` column plus the task's fields, and an ordered map of client
metadata. Tables may be memory-mapped Arrow files, so a 2,000-client dataset costs the engine
only its client index (row numbers per client), not the data.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    import datasets
    import numpy as np

CLIENT = "client_id"


@dataclass
class FederatedDataset:
    train: datasets.Dataset
    heldout: datasets.Dataset | None
    #: client id -> metadata (e.g. ``{"language": "fr"}``), in client order.
    clients: dict[str, dict[str, Any]]
    #: identifies source + config, for the on-disk cache of encoded data.
    fingerprint: str
    #: free-form facts for ``fedllm data stats`` and the run record.
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, table in (("train", self.train), ("heldout", self.heldout)):
            if table is not None and CLIENT not in table.column_names:
                raise DataError(f"{name} split has no {CLIENT!r} column "
                                f"(columns: {table.column_names})")
        if not self.clients:
            raise DataError("the dataset has no clients")

    @property
    def client_ids(self) -> list[str]:
        return list(self.clients)


def client_index(table: datasets.Dataset, clients: Iterable[str]) -> dict[str, np.ndarray]:
    """Row numbers of each client's samples in ``table``; every client must have one."""
    import numpy as np

    # via the arrow formatter, which honours select()/filter() index mappings
    col = table.with_format("arrow")[CLIENT].to_numpy(zero_copy_only=False).astype(str)
    order = np.argsort(col, kind="stable")
    keys, starts = np.unique(col[order], return_index=True)
    bounds = dict(zip(keys.tolist(), zip(starts.tolist(), [*starts[1:].tolist(), len(col)])))
    out: dict[str, np.ndarray] = {}
    empty = []
    for cid in clients:
        if cid not in bounds:
            empty.append(cid)
            continue
        a, b = bounds[cid]
        out[cid] = order[a:b]
    if empty:
        raise DataError(
            f"{len(empty)} client(s) have no training samples: {', '.join(map(repr, empty[:10]))}"
            + (" ..." if len(empty) > 10 else "")
        )
    return out


def _table(columns: dict[str, list[Any]], source: str) -> datasets.Dataset:
    """An Arrow table of the columns; a column of mixed types is an error naming it."""
    import datasets
    import pyarrow as pa

    try:
        return datasets.Dataset.from_dict(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    for name, values in columns.items():
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        try:
            pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            raise DataError(f"{source}: field {name!r} holds values of different types "
                            f"({', '.join(kinds)}); every sample's {name!r} must be of one "
                            "type (e.g. text)") from None
    return datasets.Dataset.from_dict(columns)


def fingerprint(*parts: Any) -> str:
    """A stable short hash of JSON-serialisable parts (source, config, file stats)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def from_client_samples(
    data: Mapping[str, list[Mapping[str, Any]]],
    *,
    heldout: int | float = 0,
    seed: int = 0,
    metadata: Mapping[str, dict[str, Any]] | None = None,
    fingerprint_parts: Any = None,
    source: str = "dataset",
) -> FederatedDataset:
    """Build a dataset from ``{client_id: [sample, ...]}`` (FedLLM-Bench's release format).

    ``heldout`` takes that many samples (or that fraction, rounded down, at least one when
    positive) of each client, chosen with ``seed``, out of training into the held-out split.
    """
    if not isinstance(data, Mapping) or not data:
        raise DataError(f"{source}: expected a non-empty mapping of client id -> list of samples")
    # Columnar, not row dicts: the sample strings are shared, not copied, on the way to Arrow.
    train_cols: dict[str, list[Any]] = {CLIENT: []}
    held_cols: dict[str, list[Any]] = {CLIENT: []}
    clients: dict[str, dict[str, Any]] = {}
    for cid, samples in data.items():
        cid = str(cid)
        if not isinstance(samples, list):
            raise DataError(f"{source}: client {cid!r} must map to a list of samples, "
                            f"got {type(samples).__name__}")
        if not samples:
            raise DataError(f"{source}: client {cid!r} has no samples")
        n = len(samples)
        k = int(heldout * n) if isinstance(heldout, float) and heldout < 1 else int(heldout)
        if isinstance(heldout, float) and 0 < heldout < 1:
            k = max(1, k)
        elif k >= n and n > 1:
            raise DataError(f"{source}: dataset.heldout={heldout} would hold out all "
                            f"{n} samples of client {cid!r} (each client keeps at least one "
                            f"training sample); give a fraction such as 0.1, or at most {n - 1}")
        k = min(k, n - 1)  # always leave a client at least one training sample
        held = set(random.Random(f"{seed}:{cid}").sample(range(n), k)) if k > 0 else set()
        for i, s in enumerate(samples):
            if not isinstance(s, Mapping):
                raise DataError(f"{source}: client {cid!r} sample {i} is a "
                                f"{type(s).__name__}, expected an object")
            cols = held_cols if i in held else train_cols
            size = len(cols[CLIENT])
            for key, v in s.items():
                if key == CLIENT:
                    continue
                col = cols.get(key)
                if col is None:  # a field first seen now: earlier samples lack it (None)
                    col = cols[key] = [None] * size
                col.append(v)
            cols[CLIENT].append(cid)
            for col in cols.values():  # a field this sample lacks becomes None
                if len(col) == size:
                    col.append(None)
        clients[cid] = dict((metadata or {}).get(cid, {}))

    names = sorted(set(train_cols) | set(held_cols))
    for cols in (train_cols, held_cols):
        size = len(cols[CLIENT])
        for name in names:
            cols.setdefault(name, [None] * size)
    train = _table(train_cols, source)
    held_table = _table(held_cols, source) if held_cols[CLIENT] else None
    fp = fingerprint(source, fingerprint_parts, heldout, seed)
    return FederatedDataset(train=train, heldout=held_table, clients=clients, fingerprint=fp)
