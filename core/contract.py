"""The plugin contract: every component kind, the hooks it may implement, what each hook gets
and returns, and the capabilities a kind declares as data. This file is the whole contract.

A component is an object built from a :class:`fedllm.Plugin` by its ``factory``; its
``@hookimpl`` methods named ``fedllm_*`` are its hooks. Subclass your kind's class below (e.g.
``class MyAlgorithm(Algorithm)``) so that mypy checks your hooks against the contract; pluggy
validates them again when the component is registered, and a hook your kind may not implement
is an error naming the component, the hook and the kind.

How the core calls components (one path, :mod:`fedllm.plugins`):

* a hook marked **one** is answered by one component: the first kind in its ``providers`` whose
  selected component implements it (an algorithm's ``fedllm_sample`` overrides the sampler's;
  a task's ``fedllm_local_update`` replaces the core's training loop);
* a hook marked **each** is called on every component that implements it, in config order
  (privacy mechanisms, evaluators, round observers).

Every hook is called with keyword arguments, so an implementation may accept any subset of
them; ``ctx`` is always a :class:`fedllm.context.RunContext`. A ``round`` argument is the
0-based round index (``round=0`` is the first round, a Python index into the schedule); what a
user reads (``metrics.jsonl``, the summary table, ``checkpoints/round-N``, ``eval/.../round-N``)
counts rounds from 1, so hook ``round=r`` writes the record with ``"round": r + 1``.
Set ``FEDLLM_TRACE_PLUGINS=1`` (or ``fedllm --trace-plugins``) to log every call with its
component.

Capabilities are attributes with a contract default; a component may set one from its config
in ``__init__`` (e.g. aggregation weights that depend on a config field).
"""

# The hook declarations below have only docstrings: their bodies are never run.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pluggy

if TYPE_CHECKING:
    import click
    import datasets
    import torch

    from .context import RunContext
    from .data import FederatedDataset
    from .messages import ClientInstruction, ClientUpdate, Params, RoundReport

hookspec = pluggy.HookspecMarker("fedllm")
hookimpl = pluggy.HookimplMarker("fedllm")

Mode = Literal["one", "each"]
Side = Literal["server", "client", "both", "cli"]


@dataclass(frozen=True)
class HookInfo:
    """What the contract says about one hook (the generated reference is made from this)."""

    name: str
    owner: str  #: the kind whose class declares it ("component": every kind)
    mode: Mode
    side: Side
    when: str
    providers: tuple[str, ...]  #: kinds that may implement it, in precedence order
    function: Callable[..., Any] = field(compare=False, repr=False)

    @property
    def signature(self) -> str:
        sig = inspect.signature(self.function)
        params = [p for n, p in sig.parameters.items() if n != "self"]
        return f"{self.name}({', '.join(p.name for p in params)})"

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.function) or ""


def hook(*, mode: Mode = "one", side: Side, when: str, also: tuple[str, ...] = ()):
    """Declare a contract hook: a pluggy hookspec plus what the core promises about its call.

    ``also`` names further kinds that may implement the hook, after the declaring kind in
    precedence unless listed before it with ``"<kind>!"`` (takes precedence)."""

    def mark(fn):
        fn = hookspec(firstresult=True)(fn)
        fn.fedllm_contract = {"mode": mode, "side": side, "when": when, "also": also}
        return fn

    return mark


# =========================================================================== every kind


class Component:
    """Hooks any component may implement, whatever its kind.

    Capabilities: ``plans_rounds``: the component's rule depends on how many rounds the run
    plans (it reads ``ctx.config.planned_rounds``); such a run can be extended with more
    rounds (``fedllm run --resume RUN --set rounds=N``) only when ``schedule_rounds`` fixed
    the plan from the start."""

    kind: ClassVar[str] = "component"
    plans_rounds: bool = False

    @hook(mode="each", side="server", when="once, after the config, dataset and model "
          "description are known and before the model's weights load or the run directory "
          "exists (also by `fedllm run --dry-run`)")
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        """Return the problems this component sees with the run, each one line naming the
        field, the value and what is allowed (or ``None``). Every component's problems are
        reported together. ``ctx.model`` is ``None`` here; ``ctx.model_info`` describes the
        model from its config, ``ctx.dataset`` is loaded unless loading it failed (``None``).
        """

    @hook(mode="each", side="server", when="after each round, before its record is written")
    def fedllm_round_end(self, ctx: RunContext, round: int, record: dict[str, Any]) -> None:
        """Observe the round: ``record`` is what ``metrics.jsonl`` gets; add keys to it (e.g.
        privacy spent) or raise to stop the run."""


# =========================================================================== kinds


class Dataset(Component):
    """Where the clients and their samples come from (entry-point group ``fedllm.datasets``)."""

    kind = "dataset"

    @hook(side="both", when="once per process, before any round")
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        """Return the run's :class:`fedllm.data.FederatedDataset`."""


class Peft(Component):
    """The trainable adapter attached to the frozen base model (``fedllm.peft``).

    Capabilities: ``peft_types`` (peft's ``peft_type`` values of the adapters it saves, so that
    ``fedllm eval`` can rebuild a bare adapter with the right component)."""

    kind = "peft"
    peft_types: tuple[str, ...] = ()

    @hook(side="both", when="once per process, after the base model loads")
    def fedllm_wrap_model(self, ctx: RunContext, model: Any) -> Any:
        """Attach trainable adapter tensors to the frozen base ``model`` and return the wrapped
        model. Exactly the parameters with ``requires_grad`` travel between server and clients,
        and ``model.save_pretrained`` must write an adapter ``PeftModel.from_pretrained`` loads.
        """

    @hook(side="both", when="once per process, before the base model and tokenizer load")
    def fedllm_model_path(self, ctx: RunContext) -> str | None:
        """The directory of the model this process loads as its frozen base (weights and
        tokenizer) instead of ``model.name_or_path``, e.g. the emulator federated
        offsite-tuning gives clients in place of the full model; ``None``: the configured
        model. ``ctx.model_info`` still describes the configured model."""

    @hook(side="server", when="whenever the server evaluates a global adapter (every "
          "eval_every rounds, at the end, `fedllm eval`) and when it saves the final adapter")
    def fedllm_server_model(self, ctx: RunContext, params: Params | None) -> Any:
        """The model the server evaluates and saves, holding the global adapter ``params``
        (named as ``ctx.trainable``; ``None``: the adapter ``ctx.model`` holds now). Its
        ``save_pretrained`` writes the run's final adapter. Without this hook it is
        ``ctx.model`` with ``params`` loaded; offsite-tuning plugs the adapter trained on the
        emulator into the full model here, which never leaves the server."""

    @hook(side="cli", when="by `fedllm eval ADAPTER_DIR`, for an adapter whose peft_type is "
          "in this component's peft_types")
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        """Return this component's config section (with ``name``) that rebuilds the adapter
        described by a saved ``adapter_config.json``."""


class Task(Component):
    """What a client learns from its samples: tokenization, batches, the loss (``fedllm.tasks``)."""

    kind = "task"

    @hook(side="both", when="once per run over each split; the result is cached on disk")
    def fedllm_encode(self, ctx: RunContext, batch: dict[str, list[Any]],
                      split: str) -> dict[str, list[Any]]:
        """Tokenize a batch of samples (columns of lists, ``datasets.map(batched=True)`` style)
        into model inputs; ``split`` is ``"train"`` or ``"heldout"``. Return columns of lists
        with a ``client_id`` column (rows may be dropped)."""

    @hook(side="client", when="per micro-batch")
    def fedllm_collate(self, ctx: RunContext,
                       examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of encoded examples into a batch of tensors."""

    @hook(side="client", when="per micro-batch, and by loss evaluators")
    def fedllm_loss(self, ctx: RunContext, model: Any, batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Return ``(loss, metrics)``: a scalar tensor and per-batch metrics (tensors are
        averaged on the device and read once per client)."""

    @hook(side="both", when="by generating evaluators")
    def fedllm_prompt(self, ctx: RunContext, messages: list[dict[str, str]]) -> str:
        """Render a generation prompt for ``messages`` (ending with a user turn) exactly as the
        task formats prompts in training."""

    @hook(side="client", when="per client update")
    def fedllm_local_steps(self, ctx: RunContext, client_id: str, num_samples: int) -> int | None:
        """The client's optimizer steps this round, or ``None`` for ``train.local_steps``."""

    @hook(side="client", when="per sampled client; replaces the core's training loop")
    def fedllm_local_update(self, ctx: RunContext, instruction: ClientInstruction,
                            data: datasets.Dataset) -> ClientUpdate:
        """Run the client's local training from ``instruction.params`` on ``data`` (its encoded
        training split) and return its update. Without it, :mod:`fedllm.trainer` runs."""


class Sampler(Component):
    """Which clients train each round (``fedllm.samplers``).

    Capabilities: ``sampling``: ``"fixed"`` (a fixed-size draw, possibly all clients) or
    ``"poisson"`` (each client joins a round independently with probability
    ``clients_per_round / N``, so a round may have no client: privacy accountants that assume
    Poisson subsampling hold exactly)."""

    kind = "sampler"
    sampling: Literal["fixed", "poisson"] = "fixed"

    @hook(side="server", when="once per run")
    def fedllm_cohorts(self, ctx: RunContext, clients: list[str]) -> dict[str, list[str]]:
        """Split the clients into independent federations ``{cohort: [client ids]}``, each with
        its own global adapter and server state. Without it: one cohort, ``"global"``."""

    @hook(side="server", when="per round and cohort", also=("algorithm!",))
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        """The client ids that train in ``round`` among ``clients`` (the cohort's clients in
        dataset order). An algorithm that implements it overrides the sampler."""


class Algorithm(Component):
    """The federated algorithm, both halves: server rule and client-side terms
    (``fedllm.algorithms``).

    Capabilities:

    * ``aggregation_weights``: ``"samples"`` or ``"uniform"`` when ``fedllm_aggregate`` depends
      on the round's updates only through one weighted mean of their params (so secure
      aggregation, which reveals only that mean, may be used); ``None`` otherwise.
    * ``uploads_extras``: the client sends tensors in ``update.extras`` that the server uses
      (privacy mechanisms must cover them or refuse the combination).
    """

    kind = "algorithm"
    aggregation_weights: Literal["samples", "uniform"] | None = None
    uploads_extras: bool = False

    @hook(side="server", when="per sampled client, before its instruction is sent")
    def fedllm_configure_client(self, ctx: RunContext, cohort: str, round: int,
                                instruction: ClientInstruction, state: dict[str, Any]) -> None:
        """Add what the client needs to ``instruction.extras``; ``state`` is the cohort's server
        state (read it here; it changes in ``fedllm_aggregate``)."""

    @hook(side="server", when="per round and cohort")
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        """Fold the round's updates into the new global adapter. ``updates`` is an iterator,
        produced as clients finish: consume it once, folding each update in as it arrives, so
        memory does not grow with the number of clients. ``state`` (tensors and JSON values) is
        kept per cohort across rounds and saved in every checkpoint. Do not mutate
        ``global_params``."""

    @hook(side="client", when="after the global adapter is loaded, before the first step")
    def fedllm_client_begin(self, ctx: RunContext, instruction: ClientInstruction,
                            params: dict[str, torch.nn.Parameter]) -> None:
        """Prepare the client's local update; ``params`` are the live trainable parameters."""

    @hook(side="client", when="per micro-batch")
    def fedllm_loss_terms(self, ctx: RunContext, instruction: ClientInstruction,
                          params: dict[str, torch.nn.Parameter]) -> torch.Tensor | None:
        """An extra scalar to add to the micro-batch's loss (e.g. a proximal term)."""

    @hook(side="client", when="after every optimizer step")
    def fedllm_after_step(self, ctx: RunContext, instruction: ClientInstruction,
                          params: dict[str, torch.nn.Parameter], lr: float) -> None:
        """Correct ``params`` in place (under ``no_grad``) after a step taken with ``lr``."""

    @hook(side="client", when="after local training, before privacy and upload")
    def fedllm_client_end(self, ctx: RunContext, instruction: ClientInstruction,
                          update: ClientUpdate) -> None:
        """Finish the update: add ``update.extras``, save per-client state
        (``ctx.client_state``)."""


class Privacy(Component):
    """Differential privacy on what clients upload or what the server folds (``fedllm.privacy``).

    Capabilities: ``covers_extras`` (``fedllm_privatize`` also privatizes tensors in
    ``update.extras``; without it an algorithm with ``uploads_extras`` is refused)."""

    kind = "privacy"
    covers_extras: bool = False

    @hook(mode="each", side="client", when="after fedllm_client_end, before upload, in "
          "config order")
    def fedllm_privatize(self, ctx: RunContext, instruction: ClientInstruction,
                         update: ClientUpdate) -> None:
        """Transform ``update`` in place before it leaves the client (clip, add noise)."""

    @hook(mode="each", side="server", when="per round and cohort, before any update is "
          "consumed, in config order")
    def fedllm_privatize_updates(self, ctx: RunContext, cohort: str, round: int,
                                 global_params: Params, updates: Iterator[ClientUpdate],
                                 clients: list[str]) -> Iterator[ClientUpdate] | None:
        """Wrap the stream of client updates before the algorithm folds it (e.g. clip each
        and add noise that survives the algorithm's mean); ``None`` leaves it unchanged.
        Raising here stops the round before it spends privacy budget."""


    @hook(mode="each", side="client", when="per client update of the core's training loop, "
          "around its steps, in config order (each gets the previous one's model and optimizer)")
    def fedllm_wrap_training(self, ctx: RunContext, instruction: ClientInstruction, model: Any,
                             optimizer: torch.optim.Optimizer
                             ) -> AbstractContextManager[tuple[Any, torch.optim.Optimizer]] | None:
        """A context manager entered for the client's local steps that gives the ``(model,
        optimizer)`` to train with, e.g. opacus' per-sample clipping and noise (DP-SGD), and
        undoes its changes on exit; ``None`` leaves training as it is."""


class Evaluator(Component):
    """Scores the global model (``fedllm.evaluators``).

    Capabilities: ``needs_data`` (uses the federation's dataset, e.g. held-out splits; when
    false, ``fedllm eval`` does not load the dataset)."""

    kind = "evaluator"
    needs_data: bool = True

    @hook(mode="each", side="server", when="every eval_every rounds and at the end, per "
          "cohort, in config order; and by `fedllm eval`")
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        """Score ``model`` (it holds the cohort's global adapter, in eval mode). Return JSON-
        serialisable results; the engine records them under the evaluator's name. Detailed
        outputs go to ``ctx.eval_dir(name, cohort, round)``."""


class Judge(Component):
    """A model that grades answers for judged evaluators (``fedllm.judges``).

    Capabilities: ``concurrency`` (prompts it grades at once; chunks are 4 × that).
    ``fedllm_check`` is the judge's preflight: a bad key or unreachable endpoint is reported
    before any generation starts."""

    kind = "judge"
    concurrency: int = 1

    @hook(side="server", when="once per evaluation, recorded with the scores and in the "
          "judgment cache key")
    def fedllm_judge_identity(self) -> dict[str, Any]:
        """The judge's kind, model and every setting that changes its output."""

    @hook(side="server", when="per chunk of judgments not found in the cache (4 × concurrency)")
    def fedllm_judge(self, prompts: list[tuple[str, str, int]]) -> list[str]:
        """Grade each ``(system, user, repeat)`` prompt; return the judge's texts in order (the
        evaluator parses the ratings). Run them concurrently or batched as the judge can."""


class Backend(Component):
    """Where client updates run: this process, worker processes, Flower SuperNodes
    (``fedllm.backends``)."""

    kind = "backend"

    @hook(side="server", when="by datasets that take their clients from the nodes, before "
          "the dataset loads")
    def fedllm_node_clients(self, ctx: RunContext) -> dict[str, list[str]] | None:
        """The client ids each node of this backend claims (``None``: the backend does not
        know; the dataset names the clients)."""

    @hook(side="server", when="once, after the run directory exists and before round 1")
    def fedllm_backend_start(self, ctx: RunContext) -> None:
        """Start workers or connect to nodes."""

    @hook(side="server", when="per round and cohort")
    def fedllm_run_clients(self, ctx: RunContext, cohort: str, round: int,
                           instructions: Iterable[ClientInstruction]) -> RoundReport:
        """Run each instruction's client (``fedllm.backends.run_client`` wherever its data is)
        and return a :class:`~fedllm.messages.RoundReport` whose ``updates`` yield as clients
        finish; ``dropped`` and ``stats`` are final once ``updates`` is exhausted."""

    @hook(side="server", when="once, at the end of the run (also after an error)")
    def fedllm_backend_close(self, ctx: RunContext) -> None:
        """Stop workers, release nodes."""


class Codec(Component):
    """Encodes what travels between server and clients, decodes it on arrival (``fedllm.codecs``).

    The run's codecs form a chain in config order (decoded in reverse), applied on every
    backend to each message part: the instruction's adapter (``"down"``, encoded once per
    cohort and round and shared by the cohort's clients), the update's adapter (``"up"``,
    after privacy) and the tensors in either's ``extras``. A part's tensors are a flat
    ``{name: tensor}``; a codec returns new tensors (any names, numpy-compatible dtypes: the
    wire formats carry them as arrays) plus JSON-serialisable ``meta`` its decoder gets back,
    or ``None`` to pass the part on unchanged (e.g. a codec for one direction). Without
    codecs nothing is encoded. Codecs must be deterministic (same input, same output), so
    that server state and resumed runs stay bit-exact.

    Capabilities: ``lossless`` (decode ∘ encode is the identity; lossless codecs come after
    lossy ones in the chain)."""

    kind = "codec"
    lossless: bool = False

    @hook(mode="each", side="both", when="per message part before it is sent, in config "
          "order (down: on the server; up: on the client, after fedllm_privatize)")
    def fedllm_codec_encode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None,
                            tensors: Params, reference: Params | None
                            ) -> tuple[Params, dict[str, Any]] | None:
        """Encode ``tensors`` (the previous codec's output). ``reference`` (first codec of the
        chain only; else ``None``) holds tensors of the same names the receiver already has,
        the adapter the client started from for an upload: a lossy codec may encode the
        difference from it. ``client_id`` is ``None`` for the shared down adapter. Per-client
        state (e.g. an error-feedback residual) belongs in ``ctx.client_state``."""

    @hook(mode="each", side="both", when="per message part on arrival, in reverse config "
          "order (down: on the client, before training; up: on the server, before privacy "
          "and aggregation)")
    def fedllm_codec_decode(self, ctx: RunContext, direction: Literal["down", "up"],
                            cohort: str, round: int, client_id: str | None, tensors: Params,
                            meta: dict[str, Any], reference: Params | None) -> Params:
        """Invert this codec's ``fedllm_codec_encode``: ``tensors`` and ``meta`` are what it
        returned, ``reference`` what it was given."""


class Command(Component):
    """Subcommands of the ``fedllm`` CLI contributed by a distribution (``fedllm.commands``).

    The module named by the entry point must import nothing heavy: ``fedllm --help`` imports it."""

    kind = "command"

    @hook(mode="each", side="cli", when="once, when the `fedllm` command starts")
    def fedllm_register_commands(self, cli: click.Group) -> None:
        """Add commands or groups to ``cli`` (click); heavy imports belong inside them."""


class Preset(Component):
    """Named run configs shipped as data by a distribution (``fedllm.presets``):
    ``fedllm run --preset <component>/<preset>``, listed by ``fedllm presets``.

    The component's name is the presets' namespace (``<component>/<preset>``). A preset
    is not part of a run: it is only a starting config, validated like any config file (and
    ``--set`` overrides apply on top)."""

    kind = "preset"

    @hook(mode="each", side="cli", when="by `fedllm run --preset`, `fedllm presets` and "
          "anything that lists presets; never during a run")
    def fedllm_presets(self) -> dict[str, dict[str, Any]] | None:
        """Return ``{name: {"summary": one line, "config": run config mapping}}``: ``config``
        is what a YAML config file would hold (core sections and component sections); names
        match ``[a-z0-9][a-z0-9_.-]*``. ``None``: no presets."""


#: Every kind, in the order a run registers its components.
KINDS: dict[str, type[Component]] = {c.kind: c for c in (
    Dataset, Peft, Task, Sampler, Algorithm, Privacy, Evaluator, Judge, Codec, Backend,
    Command, Preset)}

#: kind -> entry-point group
GROUPS: dict[str, str] = {
    "algorithm": "fedllm.algorithms", "sampler": "fedllm.samplers",
    "dataset": "fedllm.datasets", "task": "fedllm.tasks", "peft": "fedllm.peft",
    "privacy": "fedllm.privacy", "evaluator": "fedllm.evaluators", "judge": "fedllm.judges",
    "codec": "fedllm.codecs", "backend": "fedllm.backends", "command": "fedllm.commands",
    "preset": "fedllm.presets",
}


def _collect() -> dict[str, HookInfo]:
    hooks: dict[str, HookInfo] = {}
    classes: list[type[Component]] = [Component, *KINDS.values()]
    for cls in classes:
        for name, fn in vars(cls).items():
            meta = getattr(fn, "fedllm_contract", None)
            if meta is None or name in hooks:
                continue
            first = [k[:-1] for k in meta["also"] if k.endswith("!")]
            later = [k for k in meta["also"] if not k.endswith("!")]
            owner = cls.kind
            providers = tuple(KINDS) if owner == "component" else (*first, owner, *later)
            hooks[name] = HookInfo(name, owner, meta["mode"], meta["side"], meta["when"],
                                   providers, fn)
    return hooks


#: Every hook of the contract by name.
HOOKS: dict[str, HookInfo] = _collect()


def allowed_hooks(kind: str) -> set[str]:
    """The hooks a component of ``kind`` may implement."""
    return {h.name for h in HOOKS.values() if kind in h.providers}


def capabilities(kind: str) -> dict[str, Any]:
    """The capabilities a kind declares, with their contract defaults."""
    cls = KINDS[kind]
    names = [n for k in reversed(cls.__mro__) if issubclass(k, Component) for n in vars(k)]
    return {n: getattr(cls, n) for n in dict.fromkeys(names)
            if not n.startswith("_") and n != "kind" and not callable(getattr(cls, n))}


class _Specs:
    """A flat namespace of every hookspec, for ``PluginManager.add_hookspecs``."""


for _name, _info in HOOKS.items():
    setattr(_Specs, _name, _info.function)


# =========================================================================== the reference


def reference_markdown() -> str:
    """``docs/hooks.md``: every kind, its capabilities and hooks (who calls them, when, with
    what, returning what), generated from this file; a test keeps the two equal."""
    out = ["# Hook reference", "",
           "Generated from `core/contract.py` by `python scripts/hooks_doc.py`; do not edit.",
           "`mode`: **one**: the first component in `providers` order that implements the "
           "hook answers; **each**: every implementing component is called, in config order.",
           ""]
    classes: list[type[Component]] = [Component, *KINDS.values()]
    for cls in classes:
        hooks = [h for h in HOOKS.values() if h.owner == cls.kind]
        out += [f"## {cls.__name__} (`{cls.kind}`)", "", inspect.getdoc(cls) or "", ""]
        if cls is not Component:
            also = sorted(h.name for h in HOOKS.values()
                          if cls.kind in h.providers and h.owner not in (cls.kind, "component"))
            out.append(f"Entry-point group `{GROUPS[cls.kind]}`. Also implements: every "
                       "component's hooks" + (f", {', '.join(f'`{a}`' for a in also)}" if also
                                              else "") + ".")
            caps = capabilities(cls.kind)
            if caps:
                out.append("Capabilities (defaults): " + ", ".join(
                    f"`{k} = {v!r}`" for k, v in caps.items()) + ".")
            out.append("")
        for h in hooks:
            sig = inspect.signature(h.function)
            params = ", ".join(f"{n}: {p.annotation}" for n, p in sig.parameters.items()
                               if n != "self")
            out += [f"### `{h.signature}`", "",
                    f"`{h.name}({params}) -> {sig.return_annotation}`", "",
                    f"- mode: **{h.mode}**; side: {h.side}; providers: "
                    f"{', '.join(h.providers) if h.owner != 'component' else 'any kind'}",
                    f"- called: {h.when}", "", h.doc, ""]
    return "\n".join(out).rstrip() + "\n"
