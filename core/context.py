"""The run context every hook receives as ``ctx``, and the per-process setup that fills it."""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pluggy
import torch
from rich.console import Console

from . import plugins as plugin_registry
from .config import COMPONENTS_MANY, SECTION_KIND, ResolvedConfig
from .data import CLIENT, FederatedDataset, client_index
from .errors import DataError, FedLLMError
from .messages import Params
from .paths import fedllm_home
from .state import ClientStateStore


@dataclass
class RunContext:
    """Shared state of one run in one process.

    Plugins read ``config`` (the resolved core config), ``model``/``tokenizer``/``device``,
    ``dataset`` and ``client_state``; they call other plugins through ``hook``. The component
    objects (with their own validated configs) are in ``components``.
    """

    resolved: ResolvedConfig
    pm: pluggy.PluginManager
    components: dict[str, list[Any]]
    console: Console
    run_dir: Path | None = None
    accelerator: Any = None
    model: Any = None
    tokenizer: Any = None
    dataset: FederatedDataset | None = None
    client_state: ClientStateStore | None = None
    #: live trainable parameters of the adapter, by name (what travels)
    trainable: dict[str, torch.nn.Parameter] = field(default_factory=dict)
    encoded: dict[str, datasets.Dataset] = field(default_factory=dict)
    rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self):
        return self.resolved.run

    @property
    def hook(self):
        return self.pm.hook

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def component(self, section: str) -> Any:
        return self.components[section][0]

    # -- adapter tensors ------------------------------------------------------------------

    def get_params(self) -> Params:
        """A CPU float32 copy of the adapter (what a client sends, what the server keeps)."""
        return {k: p.detach().to("cpu", torch.float32, copy=True) for k, p in self.trainable.items()}

    @torch.no_grad()
    def set_params(self, params: Params) -> None:
        """Load adapter tensors into the model; every trainable tensor must be given."""
        missing = self.trainable.keys() - params.keys()
        unexpected = params.keys() - self.trainable.keys()
        if missing or unexpected:
            raise FedLLMError(f"adapter mismatch: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
        for k, p in self.trainable.items():
            p.copy_(params[k])

    # -- client data ----------------------------------------------------------------------

    def client_data(self, client_id: str, split: str = "train") -> datasets.Dataset:
        """The client's encoded samples of ``split`` (memory-mapped; nothing is re-tokenized)."""
        rows = self.rows.get(split, {}).get(client_id)
        if rows is None:
            raise DataError(f"client {client_id!r} has no {split} data")
        return self.encoded[split].select(rows)

    def call_in_order(self, section: str, hook_name: str, **kwargs) -> list[Any]:
        """Call ``hook_name`` on the components of ``section`` in config order (pluggy's own
        1:N order is last-registered-first; privacy and evaluators need config order)."""
        out = []
        for obj in self.components.get(section, []):
            fn = getattr(obj, hook_name, None)
            if fn is not None:
                out.append(_call_subset(fn, kwargs))
        return out


def _call_subset(fn, kwargs: dict[str, Any]) -> Any:
    """Call a hook implementation with the subset of arguments it declares (as pluggy does)."""
    names = pluggy._hooks.varnames(fn)[0]
    return fn(**{k: kwargs[k] for k in names if k in kwargs})


# --------------------------------------------------------------------------- setup


def build_context(resolved: ResolvedConfig, console: Console | None = None,
                  run_dir: Path | None = None) -> RunContext:
    """Instantiate the selected components and register them in a run-scoped manager."""
    from .trainer import DefaultLocalUpdate

    pm = plugin_registry.make_manager()
    pm.register(DefaultLocalUpdate(), name="core:local-update")
    components: dict[str, list[Any]] = {}
    for section in SECTION_KIND:
        objs = []
        for info, cfg in resolved.components[section]:
            obj = info.plugin.build(cfg)
            plugin_registry.register(pm, info.kind, info.name, obj)
            objs.append(obj)
        components[section] = objs
    return RunContext(resolved=resolved, pm=pm, components=components,
                      console=console or Console(stderr=True), run_dir=run_dir)


def setup_runtime(ctx: RunContext, *, load_data: bool = True) -> None:
    """Load the model (once per process), wrap it, load and encode the dataset."""
    from .model import load_model, load_tokenizer, make_accelerator, quiet_libraries

    quiet_libraries()
    cfg = ctx.config
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    ctx.accelerator = make_accelerator(cfg.runtime)
    ctx.tokenizer = load_tokenizer(cfg.model)
    base = load_model(cfg.model, ctx.device)
    torch.manual_seed(cfg.seed)  # adapter initialisation
    model = ctx.hook.fedllm_wrap_model(ctx=ctx, model=base)
    if model is None:
        raise FedLLMError("the peft plugin returned no model from fedllm_wrap_model")
    ctx.model = model
    ctx.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not ctx.trainable:
        raise FedLLMError("the peft plugin left no trainable parameters")
    if load_data:
        load_and_encode(ctx)
    # Freeze the objects alive now (torch, transformers, the model) out of the cyclic GC:
    # every later gc.collect() then skips ~500k objects (STACK.md P5).
    gc.collect()
    gc.freeze()


def load_and_encode(ctx: RunContext) -> None:
    ds = ctx.hook.fedllm_load_dataset(ctx=ctx)
    if ds is None:
        raise FedLLMError("the dataset plugin returned no dataset")
    ctx.dataset = ds
    for split, table in (("train", ds.train), ("heldout", ds.heldout)):
        if table is None or len(table) == 0:
            continue
        enc = encode_split(ctx, table, split)
        if len(enc) < len(table):
            dropped = len(table) - len(enc)
            ds.info[f"dropped_{split}"] = dropped
            ctx.console.print(f"[yellow]warning:[/] the task dropped {dropped} of {len(table)} "
                              f"{split} samples (too long or nothing to learn)")
        ctx.encoded[split] = enc
        if split == "train":
            ctx.rows[split] = client_index(enc, ds.clients)
        else:
            present = set(enc.unique(CLIENT))
            ctx.rows[split] = client_index(enc, [c for c in ds.clients if c in present])


def _encode_key(ctx: RunContext, split: str) -> str:
    task_info, task_cfg = ctx.resolved.one("task")
    tok = ctx.tokenizer
    blob = json.dumps({
        "dataset": ctx.dataset.fingerprint,
        "split": split,
        "task": [task_info.name, task_info.version, task_cfg.model_dump(mode="json")],
        "tokenizer": [tok.name_or_path, len(tok), tok.bos_token, tok.eos_token,
                      getattr(tok, "chat_template", None)],
        "model_max": getattr(ctx.model.config, "max_position_embeddings", None),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def encode_split(ctx: RunContext, table: datasets.Dataset, split: str) -> datasets.Dataset:
    """Tokenize once with the task's ``fedllm_encode``; cached on disk by source + config."""
    cache = fedllm_home() / "encoded"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{_encode_key(ctx, split)}.arrow"
    keep = [CLIENT]

    def fn(batch):
        out = ctx.hook.fedllm_encode(ctx=ctx, batch=batch, split=split)
        if out is None:
            raise FedLLMError("the task plugin returned nothing from fedllm_encode")
        out.setdefault(CLIENT, batch[CLIENT])  # a task that drops rows returns its own
        return out

    datasets.disable_progress_bars()
    remove = [c for c in table.column_names if c not in keep]
    return table.map(fn, batched=True, batch_size=512, remove_columns=remove,
                     cache_file_name=str(path), load_from_cache_file=True,
                     new_fingerprint=path.stem)
