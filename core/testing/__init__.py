"""``fedllm.testing``: what a plugin author needs to test a component the way fedllm runs it.

* :func:`component` builds an installed component from its config, exactly as a run does;
* :func:`call` calls one of a component's hooks through the contract (arguments a test does
  not care about are passed as ``None``);
* :mod:`fedllm.testing.contracts` holds a contract suite per kind (subclass one in your
  tests, set the component's name and config, and pytest runs every check);
* the pytest plugin :mod:`fedllm.testing.plugin` (entry point ``pytest11``) provides the
  ``fedllm_home``, ``tiny_federation`` and ``run_context`` fixtures.

Importing this package is cheap; torch loads when a fixture or suite needs it.
"""

from __future__ import annotations

from typing import Any

from ..contract import HOOKS
from ..plugins import RunComponent, build, load, make_manager

__all__ = ["component", "call", "quick_overrides", "run_quick"]


def component(kind: str, name: str, **config: Any) -> RunComponent:
    """The installed component ``kind:name`` built from ``config`` (validated by its Config)."""
    info = load(kind, name)
    if info.loaded.Config is None:  # a command component: no options
        return build(info, None)
    return build(info, info.loaded.Config.model_validate(config))


def call(target: Any, hook: str, **kwargs: Any) -> Any:
    """Call ``hook`` on a component (a :class:`RunComponent` or a plain component object)
    through pluggy, as the engine does; every argument not given is ``None``."""
    args = [a for a in HOOKS[hook].function.__code__.co_varnames[
        1:HOOKS[hook].function.__code__.co_argcount]]
    full = {a: kwargs.get(a) for a in args}
    unknown = set(kwargs) - set(args)
    if unknown:
        raise TypeError(f"{hook} takes no argument(s) {sorted(unknown)}; it takes {args}")
    if isinstance(target, RunComponent):
        return target.call(hook, **full)
    pm = make_manager()
    pm.register(target)
    return getattr(pm.hook, hook)(**full)


#: A few-seconds run on the embedded default.
QUICK = ["rounds=2", "clients_per_round=2", "train.local_steps=2", "train.batch_size=2",
         "checkpoint_every=1", "runtime.threads=1"]


def quick_overrides(*extra: str) -> list[str]:
    return [*QUICK, *extra]


def run_quick(tmp_path, *overrides: str, name: str = "r", until: int | None = None,
              config: dict[str, Any] | None = None):
    """Run the engine in-process on the tiny model and embedded data (plus ``overrides``);
    return the Engine (its run_dir, history, globals, ctx)."""
    from rich.console import Console

    from ..config import apply_override, resolve
    from ..engine import Engine

    data: dict[str, Any] = dict(config or {})
    for o in [*QUICK, f"output_dir={tmp_path}", f"name={name}", *overrides]:
        apply_override(data, o)
    eng = Engine.new(resolve(data), console=Console(stderr=True, quiet=True), progress=False)
    eng.run(until_round=until)
    return eng
