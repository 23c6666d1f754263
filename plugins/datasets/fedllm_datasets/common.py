"""Shared machinery of the raw-source datasets: load a hub id or a local path with
``datasets.load_dataset``, check columns, keep clients over a threshold, split a held-out part
per client, and cache the built dataset on disk (memory-mapped on the next run).

Tables stay Arrow tables throughout (``map``/``select``), never Python lists of samples, so a
747-client dataset costs its client index, not its text.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Dataset, PluginConfig, hookimpl, lazy
from fedllm.data import CLIENT, FederatedDataset, fingerprint
from fedllm.errors import ConfigError, DataError
from fedllm.paths import fedllm_home

if TYPE_CHECKING:
    import datasets
    import numpy as np
else:
    datasets = lazy.module('datasets')
    np = lazy.module('numpy')

#: Bump when a builder's output for the same source + config changes.
CACHE_VERSION = "v1"
_EXT_BUILDER = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet",
                ".pq": "parquet", ".arrow": "arrow", ".txt": "text"}


class SourceConfig(PluginConfig):
    """Fields every raw-source dataset shares."""

    source: str = Field(..., description="Hugging Face dataset id, or a local file / directory "
                        "holding the same columns (JSON, JSONL, CSV, Parquet).")
    subset: str | None = Field(None, description="The source's configuration name, if it has "
                               "several.")
    split: str = Field("train", description="The source split to build clients from.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to "
                                 "pin; part of the cache key. Ignored for local paths.")
    heldout: float = Field(0.1, ge=0, description="Held-out samples per client for in-domain "
                           "evaluation: a count (>= 1) or a fraction (< 1).")
    seed: int = Field(0, ge=0, description="Seed of every random choice (held-out draw, IID "
                      "shuffles): the same seed builds the same dataset.")
    cache: bool = Field(True, description="Cache the built dataset under $FEDLLM_HOME/datasets "
                        "and reuse it when source and config are unchanged.")


def source_problem(source: str, field: str = "dataset.source") -> str | None:
    """What is wrong with a source before anything loads: a local path that does not exist,
    or (offline) a hub id that is not in the local datasets cache."""
    p = Path(source).expanduser()
    if p.exists():
        return None
    if source.startswith((".", "/", "~")) or p.suffix.lower() in _EXT_BUILDER:
        return (f"{field}: {source!r} does not exist (a local file or directory, or a Hugging "
                "Face dataset id)")
    return None


class SourceDataset(Dataset):
    """Base of the datasets built from a raw source (``config.source``)."""

    config: SourceConfig

    @hookimpl
    def fedllm_check(self, ctx) -> list[str] | None:
        problem = source_problem(self.config.source)
        return [problem] if problem else None


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def source_identity(source: str) -> Any:
    """What identifies a source for the cache: a hub id as is, a local path with its files'
    sizes and mtimes (editing a fixture invalidates the cache)."""
    p = Path(source).expanduser()
    if p.exists():
        return [str(p.resolve()), [(str(f.relative_to(p) if p.is_dir() else f.name),
                                    f.stat().st_size, f.stat().st_mtime_ns)
                                   for f in _local_files(p)]]
    return source


def load_source(c: SourceConfig, field: str = "dataset.source") -> datasets.Dataset:
    """``datasets.load_dataset`` on the hub id or the local path (a local file is read by the
    builder of its extension; a directory is resolved by ``datasets`` like a hub repo)."""
    p = Path(c.source).expanduser()
    kwargs: dict[str, Any] = {"split": c.split}
    if p.exists():
        kwargs["cache_dir"] = str(fedllm_home() / "hf-datasets")
        if p.is_file():
            builder = _EXT_BUILDER.get(p.suffix.lower())
            if builder is None:
                raise ConfigError(f"{field}: {c.source!r} has extension {p.suffix!r}; "
                                  f"local files must be one of {sorted(_EXT_BUILDER)}")
            args: tuple = (builder,)
            kwargs["data_files"] = {c.split: str(p)}
        else:
            args = (str(p),) if c.subset is None else (str(p), c.subset)
    else:
        if "/" not in c.source and not c.source.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{field}: {c.source!r} is neither an existing path nor a hub id")
        args = (c.source,) if c.subset is None else (c.source, c.subset)
        if c.revision:
            kwargs["revision"] = c.revision
    try:
        ds = datasets.load_dataset(*args, **kwargs)
    except ValueError as exc:
        if "split" in str(exc).lower() or "Unknown split" in str(exc):
            raise ConfigError(f"dataset.split: {c.split!r}: {exc}") from None
        raise DataError(f"{field}: could not load {c.source!r}: {exc}") from None
    except FileNotFoundError as exc:
        raise DataError(f"{field}: {c.source!r} not found locally nor on the hub ({exc}); "
                        "offline runs need a local copy") from None
    except Exception as exc:  # noqa: BLE001 - hub/connection errors become one clear line
        if type(exc).__name__ in {"DatasetNotFoundError", "ConnectionError", "OfflineModeIsEnabled",
                                  "LocalEntryNotFoundError", "DataFilesNotFoundError"}:
            raise DataError(f"{field}: could not load {c.source!r}: {exc}") from None
        raise
    return ds


def column(ds: datasets.Dataset, name: str) -> np.ndarray:
    """A column as numpy, honouring ``select``/``filter`` index mappings (``ds.data`` does not)."""
    return np.asarray(ds.with_format("arrow")[name].to_numpy(zero_copy_only=False))


def require_columns(ds: datasets.Dataset, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{source}: missing required column(s) {missing}; found columns "
                        f"{ds.column_names}")


def keep_clients(ds: datasets.Dataset, min_samples: int, what: str,
                 field: str = "dataset.min_samples") -> tuple[datasets.Dataset, dict[str, int]]:
    """Keep clients with at least ``min_samples`` rows; error (with counts) if none is left."""
    if len(ds) == 0:
        raise DataError(f"{what}: no samples are left after filtering, so there are no clients")
    ids: Any = column(ds, CLIENT).astype(str)
    keys, counts = np.unique(ids, return_counts=True)
    kept = {k: int(n) for k, n in zip(keys.tolist(), counts.tolist()) if n >= min_samples}
    if not kept:
        raise DataError(
            f"{what}: {field}={min_samples} leaves no client: {len(keys)} clients with "
            f"{len(ids)} samples before (largest has {int(counts.max())}), 0 after")
    rows = np.flatnonzero(np.isin(ids, list(kept)))
    return ds.select(rows), kept


def split_heldout(ds: datasets.Dataset, heldout: float, seed: int
                  ) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Move ``heldout`` samples (a count, or a fraction rounded down and at least one) of each
    client into a held-out table; every client keeps at least one training sample. The draw
    depends only on seed and client id, so adding a client never changes another's split."""
    if heldout <= 0:
        return ds, None
    ids: Any = column(ds, CLIENT).astype(str)
    order = np.argsort(ids, kind="stable")
    keys, starts = np.unique(ids[order], return_index=True)
    ends = [*starts[1:].tolist(), len(ids)]
    held: list[int] = []
    for cid, a, b in zip(keys.tolist(), starts.tolist(), ends):
        rows = order[a:b]
        n = len(rows)
        k = int(heldout * n) if heldout < 1 else int(heldout)
        if heldout < 1:
            k = max(1, k)
        k = min(k, n - 1)
        if k > 0:
            held.extend(rows[random.Random(f"{seed}:{cid}").sample(range(n), k)].tolist())
    if not held:
        return ds, None
    mask: Any = np.zeros(len(ids), dtype=bool)
    mask[held] = True
    return ds.select(np.flatnonzero(~mask)), ds.select(np.flatnonzero(mask))


def client_metadata(ds: datasets.Dataset, counts: dict[str, int], meta_columns: Iterable[str]
                    ) -> dict[str, dict[str, Any]]:
    """Clients in id order, each with its sample count and, per metadata column, the most
    frequent value among its samples (e.g. an annotator's language)."""
    meta_columns = [m for m in meta_columns if m in ds.column_names]
    ids: Any = column(ds, CLIENT).astype(str)
    out: dict[str, dict[str, Any]] = {cid: {"samples": counts[cid]} for cid in sorted(counts)}
    for m in meta_columns:
        vals = column(ds, m).tolist()
        tally: dict[str, dict[Any, int]] = {}
        for cid, v in zip(ids.tolist(), vals):
            t = tally.setdefault(cid, {})
            t[v] = t.get(v, 0) + 1
        for cid, t in tally.items():
            if cid in out:
                out[cid][m] = max(t.items(), key=lambda kv: (kv[1], str(kv[0])))[0]
    return out


def cache_dir(name: str, parts: Any) -> Path:
    return fedllm_home() / "datasets" / f"{name}-{fingerprint(CACHE_VERSION, name, parts)}"


def _load_cached(path: Path) -> FederatedDataset | None:
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text("utf-8"))
    train = datasets.load_from_disk(str(path / "train"))
    held = datasets.load_from_disk(str(path / "heldout")) if meta["has_heldout"] else None
    info = {**meta["info"], "cache": str(path), "cached": True}
    return FederatedDataset(train=train, heldout=held, clients=meta["clients"],
                            fingerprint=meta["fingerprint"], info=info)


@contextlib.contextmanager
def quiet():
    """No per-operation progress bars while building: a build is one step of a run, reported
    by the run. datasets has a switch; flwr-datasets' NaturalIdPartitioner calls a module-level
    ``tqdm`` (TQDM_DISABLE is read only at tqdm's import), so it gets a disabled one meanwhile."""
    import functools

    from flwr_datasets.partitioner import natural_id_partitioner as nip

    was = datasets.utils.logging.is_progress_bar_enabled()
    orig = nip.tqdm
    datasets.disable_progress_bars()
    nip.tqdm = functools.partial(orig, disable=True)
    try:
        yield
    finally:
        nip.tqdm = orig
        if was:
            datasets.enable_progress_bars()


def cached_build(name: str, c: SourceConfig, build: Callable[[], tuple[datasets.Dataset,
                 datasets.Dataset | None, dict[str, dict[str, Any]], dict[str, Any]]]
                 ) -> FederatedDataset:
    """Return the dataset ``build()`` makes for ``name`` + source + config, from the on-disk
    cache when present; a fresh build is written atomically (temp dir + rename) and then
    re-opened memory-mapped."""
    parts = [source_identity(c.source), c.model_dump(mode="json", exclude={"cache"})]
    fp = fingerprint(CACHE_VERSION, name, parts)
    path = cache_dir(name, parts)
    if c.cache:
        hit = _load_cached(path)
        if hit is not None:
            return hit
    with quiet():
        return _build_and_store(name, c, build, fp, path)


def _build_and_store(name, c, build, fp, path) -> FederatedDataset:
    train, held, clients, info = build()
    info = {"name": name, "source": c.source, **info}
    if not c.cache:  # the engine indexes the raw Arrow table, so drop index mappings
        train = train.flatten_indices()
        held = held.flatten_indices() if held is not None else None
        return FederatedDataset(train=train, heldout=held, clients=clients, fingerprint=fp,
                                info={**info, "cached": False})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        train.save_to_disk(str(tmp / "train"))
        if held is not None:
            held.save_to_disk(str(tmp / "heldout"))
        (tmp / "meta.json").write_text(json.dumps(
            {"clients": clients, "fingerprint": fp, "has_heldout": held is not None,
             "info": info}, default=str), "utf-8")
        if path.exists() and not (path / "meta.json").is_file():
            shutil.rmtree(path, ignore_errors=True)  # a broken leftover, never a valid cache
        try:
            os.rename(tmp, path)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = _load_cached(path)
    assert out is not None  # just written
    out.info["cached"] = False
    return out


def finish(ds: datasets.Dataset, c: SourceConfig, *, min_samples: int, what: str,
           fields: list[str], meta_columns: Iterable[str] = (), info: dict | None = None,
           field: str = "dataset.min_samples"):
    """Threshold clients, split held-out, keep only client id + task fields; the tuple that
    :func:`cached_build` expects."""
    before = len(ds)
    if ds.features[CLIENT] != datasets.Value("string"):
        ds = ds.cast_column(CLIENT, datasets.Value("string"))
    ds, counts = keep_clients(ds, min_samples, what, field)
    clients = client_metadata(ds, counts, meta_columns)
    ds = ds.select_columns([CLIENT, *fields])
    train, held = split_heldout(ds, c.heldout, c.seed)
    facts = {"rows_before_client_filter": before, "clients": len(clients), "samples": len(ds),
             **(info or {})}
    return train, held, clients, facts
