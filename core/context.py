"""The run context every hook receives as ``ctx``, and the per-process setup that fills it.

A process builds its context in stages, so that every problem is found before anything
expensive happens and before the run directory exists:

1. :func:`build_context`: the selected components, built from the resolved config;
2. :func:`prepare`: the model described from its config (no weights), the dataset loaded,
   the cohorts formed, and every component's ``fedllm_check`` run; all problems are reported
   together (this is what ``fedllm run --dry-run`` runs);
3. :func:`load_runtime`: the base model loaded once, wrapped by the peft component, and the
   dataset encoded (cached on disk).
"""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from .config import COMPONENTS_MANY, SECTION_KIND, ResolvedConfig
from .contract import HOOKS
from .data import CLIENT, FederatedDataset, client_index
from .errors import ConfigError, DataError, FedLLMError
from .messages import Params
from .model import ModelInfo, describe_model
from .output import VERBOSE, verbosity
from .output import Console as StderrConsole
from .paths import fedllm_home
from .plugins import Components, RunComponent, build
from .state import ClientStateStore

if TYPE_CHECKING:
    import datasets
    import numpy as np
    import torch

DEFAULT_COHORT = "global"


@dataclass
class RunContext:
    """Shared state of one run in one process (server or client).

    Fields a hook may read:

    * ``config``: the resolved core config (:class:`fedllm.config.RunConfig`); each
      component has its own validated config as ``self.config``;
    * ``model_info``: the base model described from its config (context length, layers),
      known before the weights load; ``model``, ``tokenizer``, ``device`` once loaded;
    * ``dataset``: the :class:`~fedllm.data.FederatedDataset`; ``cohorts``: cohort name ->
      its client ids (one ``"global"`` cohort unless the sampler splits); ``num_clients(c)``;
    * ``run_dir``: the run directory (``None`` in checks and ``--dry-run``; set on the server
      before the backend starts); ``client_state``: per-client state on disk;
    * ``trainable``: the live adapter parameters that travel, by name;
    * ``plugins``: the run's components (``ctx.call`` / ``ctx.each`` call their hooks);
    * ``progress``: whether components may show progress bars on ``console`` (false under
      ``--no-progress``; bars are shown only when ``console`` is a terminal anyway).
    """

    resolved: ResolvedConfig
    plugins: Components
    console: Console
    run_dir: Path | None = None
    client_state: ClientStateStore | None = None
    cohorts: dict[str, list[str]] = field(default_factory=dict)
    model_info: ModelInfo | None = None
    accelerator: Any = None
    model: Any = None
    tokenizer: Any = None
    dataset: FederatedDataset | None = None
    trainable: dict[str, torch.nn.Parameter] = field(default_factory=dict)
    encoded: dict[str, datasets.Dataset] = field(default_factory=dict)
    rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    progress: bool = True

    @property
    def config(self):
        return self.resolved.run

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def data(self) -> FederatedDataset:
        """The dataset, where it must be loaded (an error naming the gap otherwise)."""
        if self.dataset is None:
            raise FedLLMError("the dataset is not loaded in this process")
        return self.dataset

    @property
    def state(self) -> ClientStateStore:
        """Per-client state, where a run directory (or a node's store) provides it."""
        if self.client_state is None:
            raise FedLLMError("no per-client state store here (no run directory)")
        return self.client_state

    @property
    def backend(self) -> RunComponent:
        return self.plugins.one("backend")

    def num_clients(self, cohort: str) -> int:
        """N, the number of clients in ``cohort`` (the whole federation's, by default)."""
        if cohort in self.cohorts:
            return len(self.cohorts[cohort])
        if self.dataset is None:
            raise FedLLMError(f"the number of clients of cohort {cohort!r} is not known here")
        return len(self.dataset.clients)

    # -- calling components ---------------------------------------------------------------

    def _args(self, hook: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "ctx" in HOOKS[hook].function.__code__.co_varnames:
            return {"ctx": self, **kwargs}
        return kwargs

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook one component answers (its provider); ``None`` if none implements it."""
        return self.plugins.call(hook, **self._args(hook, kwargs))

    def each(self, hook: str, kind: str | None = None,
             **kwargs: Any) -> list[tuple[RunComponent, Any]]:
        """Call a hook on every component (of ``kind``) implementing it, in config order."""
        return self.plugins.each(hook, kind, **self._args(hook, kwargs))

    # -- adapter tensors ------------------------------------------------------------------

    def get_params(self) -> Params:
        """A CPU float32 copy of the adapter (what a client sends, what the server keeps)."""
        import torch

        return {k: p.detach().to("cpu", torch.float32, copy=True)
                for k, p in self.trainable.items()}

    def set_params(self, params: Params) -> None:
        """Load adapter tensors into the model; every trainable tensor must be given."""
        import torch

        missing = self.trainable.keys() - params.keys()
        unexpected = params.keys() - self.trainable.keys()
        if missing or unexpected:
            raise FedLLMError(f"adapter mismatch: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
        with torch.no_grad():
            for k, p in self.trainable.items():
                p.copy_(params[k])

    # -- client data ----------------------------------------------------------------------

    def client_data(self, client_id: str, split: str = "train") -> datasets.Dataset:
        """The client's encoded samples of ``split`` (memory-mapped; nothing is re-tokenized)."""
        rows = self.rows.get(split, {}).get(client_id)
        if rows is None:
            raise DataError(f"client {client_id!r} has no {split} data")
        return self.encoded[split].select(rows)

    # -- files ----------------------------------------------------------------------------

    def eval_path(self, evaluator: str, cohort: str, round: int | None) -> Path | None:
        """Where an evaluator writes its detailed report for ``round`` (0-based; ``None``: a
        final-adapter evaluation): ``eval/<evaluator>/[<cohort>/]round-<N>.json``."""
        if self.run_dir is None:
            return None
        base = Path(self.run_dir) / "eval" / evaluator
        if cohort != DEFAULT_COHORT or len(self.cohorts) > 1:
            base = base / cohort
        return base / ("final.json" if round is None else f"round-{round + 1}.json")


# --------------------------------------------------------------------------- stage 1


def build_context(resolved: ResolvedConfig, console: Console | None = None,
                  run_dir: Path | None = None) -> RunContext:
    """Build the selected components, in registration order."""
    built = [build(info, cfg) for section in (*SECTION_KIND, "backend")
             for info, cfg in resolved.components.get(section, [])]
    return RunContext(resolved=resolved, plugins=Components(built),
                      console=console or StderrConsole(stderr=True), run_dir=run_dir)


# --------------------------------------------------------------------------- stage 2


def prepare(ctx: RunContext, *, load_data: bool = True, checks: bool = True) -> None:
    """Describe the model, load the dataset, form the cohorts and run every check; raise one
    :class:`ConfigError` listing every problem found."""
    from .checks import core_problems

    problems: list[str] = []
    try:
        ctx.model_info = describe_model(ctx.config.model)
    except FedLLMError as exc:
        problems.append(str(exc))
    if load_data:
        try:
            load_dataset(ctx)
            form_cohorts(ctx)
        except FedLLMError as exc:
            problems.append(str(exc))
    if checks:
        problems += core_problems(ctx)
        for comp, found in ctx.each("fedllm_check"):
            for p in found or []:
                problems.append(p if ":" in p.split(" ", 1)[0] else f"{comp.kind} {comp.name}: {p}")
    if problems:
        raise ConfigError("the run cannot start:\n  " + "\n  ".join(problems))


def load_dataset(ctx: RunContext) -> FederatedDataset:
    ds = ctx.call("fedllm_load_dataset")
    if ds is None:
        raise FedLLMError("the dataset plugin returned no dataset from fedllm_load_dataset")
    ctx.dataset = ds
    return ds


def form_cohorts(ctx: RunContext) -> None:
    clients = ctx.data.client_ids
    cohorts = ctx.call("fedllm_cohorts", clients=clients) or {DEFAULT_COHORT: clients}
    for name, members in cohorts.items():
        unknown = set(members) - set(clients)
        if not members or unknown:
            raise FedLLMError(f"cohort {name!r} is empty or names unknown clients "
                              f"{sorted(unknown)[:5]}")
    ctx.cohorts = {name: list(members) for name, members in cohorts.items()}


# --------------------------------------------------------------------------- stage 3


def load_runtime(ctx: RunContext, *, encode: bool = True) -> None:
    """Load the model (once per process), wrap it, encode the dataset."""
    import torch

    from .model import load_model, load_tokenizer, make_accelerator
    from .output import quiet_libraries

    quiet_libraries()
    cfg = ctx.config
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    ctx.accelerator = make_accelerator(cfg.runtime)
    model_cfg = _model_config(ctx)
    ctx.tokenizer = load_tokenizer(model_cfg)
    base = load_model(model_cfg, ctx.device,
                      gradient_checkpointing=cfg.train.gradient_checkpointing)
    torch.manual_seed(cfg.seed)  # adapter initialisation
    model = ctx.call("fedllm_wrap_model", model=base)
    if model is None:
        raise FedLLMError("the peft plugin returned no model from fedllm_wrap_model")
    ctx.model = model
    ctx.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not ctx.trainable:
        raise FedLLMError("the peft plugin left no trainable parameters")
    if encode and ctx.dataset is not None:
        encode_dataset(ctx)
    # Freeze the objects alive now (torch, transformers, the model) out of the cyclic GC:
    # every later gc.collect() then skips ~500k objects (STACK.md P5).
    gc.collect()
    gc.freeze()


def _model_config(ctx: RunContext):
    """``model``, pointed at the directory the peft component's ``fedllm_model_path`` names."""
    path = ctx.call("fedllm_model_path")
    if path is None:
        return ctx.config.model
    return ctx.config.model.model_copy(update={"name_or_path": str(path)})


def encode_dataset(ctx: RunContext) -> None:
    """Encode both splits and index the clients' rows; a failure leaves no new cache file."""
    ds = ctx.data
    created: list[Path] = []
    try:
        for split, table in (("train", ds.train), ("heldout", ds.heldout)):
            if table is None or len(table) == 0:
                continue
            path = encode_path(ctx, split)
            if not path.exists():
                created.append(path)
            enc = encode_split(ctx, table, split)
            if len(enc) < len(table):
                dropped = len(table) - len(enc)
                ds.info[f"dropped_{split}"] = dropped
                ctx.console.print(f"[yellow]warning:[/] the task dropped {dropped} of "
                                  f"{len(table)} {split} samples (too long or nothing to learn)")
            ctx.encoded[split] = enc
            if split == "train":
                ctx.rows[split] = client_index(enc, ds.clients)
            else:
                present = set(enc.unique(CLIENT))
                ctx.rows[split] = client_index(enc, [c for c in ds.clients if c in present])
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def _encode_key(ctx: RunContext, split: str) -> str:
    task_info, task_cfg = ctx.resolved.one("task")
    tok = ctx.tokenizer
    blob = json.dumps({
        "dataset": ctx.data.fingerprint,
        "split": split,
        "task": [task_info.name, task_info.version, task_cfg.model_dump(mode="json")],
        "tokenizer": [tok.name_or_path, len(tok), tok.bos_token, tok.eos_token,
                      getattr(tok, "chat_template", None)],
        "model_max": getattr(ctx.model.config, "max_position_embeddings", None),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def encode_path(ctx: RunContext, split: str) -> Path:
    """The on-disk cache of a split's encoding (keyed by dataset, task and tokenizer)."""
    return fedllm_home() / "encoded" / f"{_encode_key(ctx, split)}.arrow"


def encode_split(ctx: RunContext, table: datasets.Dataset, split: str) -> datasets.Dataset:
    """Tokenize once with the task's ``fedllm_encode``; cached on disk by source + config."""
    import datasets

    path = encode_path(ctx, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = [CLIENT]

    def fn(batch):
        out = ctx.call("fedllm_encode", batch=batch, split=split)
        if out is None:
            raise FedLLMError("the task plugin returned nothing from fedllm_encode")
        out.setdefault(CLIENT, batch[CLIENT])  # a task that drops rows returns its own
        return out

    if verbosity() < VERBOSE:
        datasets.disable_progress_bars()
    remove = [c for c in table.column_names if c not in keep]
    return table.map(fn, batched=True, batch_size=512, remove_columns=remove,
                     cache_file_name=str(path), load_from_cache_file=True,
                     new_fingerprint=path.stem)


def client_context(resolved: ResolvedConfig, console: Console | None = None) -> RunContext:
    """The whole client side of a process (a worker, a Flower node): components, data and
    model; no checks (the coordinator ran them)."""
    ctx = build_context(resolved, console=console)
    prepare(ctx, checks=False)
    load_runtime(ctx)
    return ctx


__all__ = ["RunContext", "build_context", "prepare", "load_runtime", "client_context",
           "DEFAULT_COHORT", "COMPONENTS_MANY", "ConfigError"]
