"""The hook specifications: the whole contract between the core and its plugins.

Every hook is called with keyword arguments only, so an implementation may accept any
subset of them (pluggy), and new arguments can be added without breaking plugins.

Two sides:

* **server side** (the coordinator): ``fedllm_cohorts``, ``fedllm_sample``,
  ``fedllm_configure_client``, ``fedllm_privatize_updates``, ``fedllm_aggregate``,
  ``fedllm_privatize_aggregate``,
  ``fedllm_evaluate``, ``fedllm_round_end``;
* **client side** (wherever a client's local update runs: in-process, a worker process or a
  Flower SuperNode): ``fedllm_wrap_model``, ``fedllm_encode``, ``fedllm_collate``,
  ``fedllm_loss``, ``fedllm_local_steps``, ``fedllm_local_update``, ``fedllm_client_begin``,
  ``fedllm_loss_terms``, ``fedllm_after_step``, ``fedllm_client_end``, ``fedllm_privatize``.

``firstresult`` hooks stop at the first implementation that returns something other than
``None``; pluggy calls ``tryfirst`` implementations first, then the most recently registered.
The engine registers the run's components in this order: dataset, peft, task, sampler,
algorithm, privacy (config order), evaluators (config order). So an algorithm may override a
sampler's ``fedllm_sample`` and a task may override the core's default ``fedllm_local_update``.

Everything a hook receives as ``ctx`` is a :class:`fedllm.context.RunContext`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fedllm")
hookimpl = pluggy.HookimplMarker("fedllm")


# --------------------------------------------------------------------------- datasets


@hookspec(firstresult=True)
def fedllm_load_dataset(ctx):
    """Return the run's :class:`fedllm.data.FederatedDataset` (dataset kind).

    Called once per run, on the server and on each client process, before any round.
    """


# --------------------------------------------------------------------------- model / peft


@hookspec(firstresult=True)
def fedllm_wrap_model(ctx, model):
    """Attach trainable adapter tensors to the frozen base ``model`` and return the wrapped
    model (peft kind). Called once per process. Only parameters with ``requires_grad`` travel.
    """


# --------------------------------------------------------------------------- task


@hookspec(firstresult=True)
def fedllm_encode(ctx, batch, split):
    """Tokenize a batch of samples (``dict`` of column lists, ``datasets.map(batched=True)``
    style) into model inputs; return a ``dict`` of column lists (task kind).

    ``split`` is ``"train"`` or ``"heldout"``. Called once per run over the whole dataset; the
    result is cached on disk, so it is never called again per round.
    """


@hookspec(firstresult=True)
def fedllm_collate(ctx, examples):
    """Pad a list of encoded examples into a batch ``dict`` of tensors (task kind)."""


@hookspec(firstresult=True)
def fedllm_loss(ctx, model, batch):
    """Return ``(loss, metrics)`` for one batch: a scalar tensor and a ``dict`` of floats to
    average over the local update (task kind). Used for training and by loss evaluators.
    """


@hookspec(firstresult=True)
def fedllm_prompt(ctx, messages):
    """Render a generation prompt for ``messages`` (``[{"role", "content"}]`` ending with a
    user turn) exactly as the task formats prompts in training (task kind). Evaluators use
    it so that generation sees the training template.
    """


@hookspec(firstresult=True)
def fedllm_local_steps(ctx, client_id, num_samples):
    """Return the number of optimizer steps for this client this round, or ``None`` for the
    configured ``train.local_steps`` (task kind: e.g. dynamic local steps).
    """


# --------------------------------------------------------------------------- server side


@hookspec(firstresult=True)
def fedllm_cohorts(ctx, clients):
    """Split the clients into independent federations: return ``{cohort_name: [client_id]}``
    (sampler kind). Each cohort has its own global adapter and server state; the default is
    one cohort, ``"global"``, with every client. Called once per run.
    """


@hookspec(firstresult=True)
def fedllm_sample(ctx, cohort, clients, round):
    """Return the client ids that train in ``round`` among ``clients`` (the cohort's clients,
    in dataset order). Sampler kind; an algorithm may override it with ``tryfirst``.
    """


@hookspec
def fedllm_configure_client(ctx, cohort, round, instruction, state):
    """Add algorithm extras to a client's instruction before it is sent down (algorithm kind),
    by mutating ``instruction.extras``. ``state`` is the cohort's server state (read it; the
    aggregate hook is where it changes).
    """


@hookspec(firstresult=True)
def fedllm_aggregate(ctx, cohort, round, global_params, updates, state):
    """Fold the round's client updates into the new global adapter and return it as
    ``{name: tensor}`` (algorithm kind).

    ``updates`` is an **iterator** of :class:`fedllm.messages.ClientUpdate`, produced as
    clients finish: consume it once and fold each update in as it arrives so that memory does
    not grow with the number of clients. ``state`` is a mutable ``dict[str, Tensor]`` kept per
    cohort across rounds and saved in every checkpoint (server optimizer moments, control
    variates). ``global_params`` must not be mutated.
    """


@hookspec(firstresult=True)
def fedllm_aggregation_weights(ctx):
    """Declare that this algorithm's ``fedllm_aggregate`` uses the round's updates only through
    one weighted mean of their ``params``, and with which weights: ``"samples"`` (n_k) or
    ``"uniform"`` (algorithm kind). Handed a single update holding that mean, it must return
    what it returns for the individual updates. Secure aggregation, where the server learns
    only that mean, requires it; an algorithm that needs individual updates (or tensors in
    their ``extras``) leaves it unimplemented or returns ``None``.
    """


@hookspec
def fedllm_privatize_updates(ctx, cohort, round, global_params, updates, clients):
    """Server-side privacy on the stream of client updates *before* the algorithm folds them
    (privacy kind, called in config order). ``updates`` is the iterator of
    :class:`ClientUpdate` the algorithm would receive, ``clients`` the ids sampled this round.
    Return a replacement iterator (e.g. one that clips each update and adds noise that
    survives the algorithm's mean) or ``None`` to leave the stream unchanged. Called before any
    update is consumed, so raising here stops the round before it spends privacy budget.
    """


@hookspec
def fedllm_privatize_aggregate(ctx, cohort, round, global_params, new_params, num_updates):
    """Server-side privacy on the aggregate (privacy kind, called in config order). Return
    the replacement for ``new_params`` or ``None`` to leave it unchanged.
    """


@hookspec
def fedllm_evaluate(ctx, model, cohort, round):
    """Score the global model (``model`` holds the cohort's global adapter). Return a ``dict``
    of JSON-serialisable results; the engine records them as ``<evaluator>/<key>``
    (evaluator kind, called in config order).
    """


@hookspec
def fedllm_round_end(ctx, round, record):
    """Called after each round with the metrics ``record`` about to be written; an
    implementation may add keys to it (e.g. privacy spent) or raise to stop the run.
    """


# --------------------------------------------------------------------------- client side


@hookspec(firstresult=True)
def fedllm_local_update(ctx, instruction, data):
    """Run one client's local training and return a :class:`ClientUpdate`.

    The core provides the default (AdamW loop calling the task and algorithm hooks); a task
    may replace it. ``data`` is the client's encoded training split (a ``datasets.Dataset``).
    """


@hookspec
def fedllm_client_begin(ctx, instruction, params):
    """Called after the global adapter is loaded into the model and before the first step
    (algorithm kind). ``params`` maps names to the live trainable parameters.
    """


@hookspec
def fedllm_loss_terms(ctx, instruction, params):
    """Return an extra scalar tensor to add to every micro-batch's loss, or ``None``
    (algorithm kind, e.g. a proximal term).
    """


@hookspec
def fedllm_after_step(ctx, instruction, params, lr):
    """Called after every optimizer step with the step's learning rate (algorithm kind,
    e.g. a per-step drift correction). May update ``params`` in place under ``no_grad``.
    """


@hookspec
def fedllm_client_end(ctx, instruction, update):
    """Called with the finished update before it leaves the client (algorithm kind): may add
    ``update.extras`` and update per-client state.
    """


@hookspec
def fedllm_privatize(ctx, instruction, update):
    """Client-side privacy: transform ``update.params`` in place before upload (privacy kind,
    called in config order, after ``fedllm_client_end``).
    """
