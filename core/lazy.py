"""Modules imported on first attribute access, for plugin modules that must load fast.

``fedllm plugins`` and ``fedllm --help`` import every plugin's entry-point module, so those
modules may not import torch, datasets or numpy at load time. A module that uses one
everywhere writes::

    if TYPE_CHECKING:
        import datasets
    else:
        datasets = lazy.module("datasets")

and keeps its code unchanged; the import happens at the first ``datasets.<attr>``.
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def module(name: str) -> Any:
    """A stand-in for ``import name`` that imports on first use."""
    return _LazyModule(name)


def no_grad(fn):
    """``@torch.no_grad()`` without importing torch when the module loads."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
