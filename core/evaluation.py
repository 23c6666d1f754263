"""The one evaluation loop: the engine's every ``eval_every`` rounds and ``fedllm eval``'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import RunContext
    from .messages import Params


def evaluate_model(ctx: RunContext, params: Params | None, cohort: str,
                   round: int | None, on_start=None) -> dict[str, Any]:
    """Load ``params`` (the cohort's global adapter; ``None``: the model as it is) and run
    every evaluator in config order; returns ``{evaluator name: its results}``.
    ``on_start(component)`` is called before each evaluator (progress output)."""
    model = server_model(ctx, params)
    model.eval()
    out: dict[str, Any] = {}
    for comp in ctx.plugins.of("evaluator"):
        if not comp.implements("fedllm_evaluate"):
            continue
        if on_start is not None:
            on_start(comp)
        result = comp.call("fedllm_evaluate", ctx=ctx, model=model, cohort=cohort,
                           round=round)
        if result:
            out[comp.name] = result
    return out


def server_model(ctx: RunContext, params: Params | None) -> Any:
    """The model the server evaluates and saves, holding ``params`` (``None``: as it is): the
    peft component's ``fedllm_server_model`` when it has one, else ``ctx.model``."""
    if ctx.plugins.provider("fedllm_server_model") is not None:
        return ctx.call("fedllm_server_model", params=params)
    if params is not None:
        ctx.set_params(params)
    return ctx.model
