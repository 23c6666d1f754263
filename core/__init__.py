"""fedllm: federated fine-tuning of LLMs with plugins for every moving part.

The public API for plugin authors is re-exported here: ``hookimpl``, ``Plugin``,
``PluginConfig``, the contract's kind classes (``Algorithm``, ``Dataset``, ...), the message
types and the dataset contract. Attributes are imported on first use, so ``import fedllm``
costs nothing until something is used (the CLI answers ``--help`` without torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "hookimpl": "contract", "Component": "contract", "Dataset": "contract",
    "Peft": "contract", "Task": "contract", "Sampler": "contract", "Algorithm": "contract",
    "Privacy": "contract", "Evaluator": "contract", "Judge": "contract",
    "Codec": "contract", "Backend": "contract", "Command": "contract", "Preset": "contract",
    "Plugin": "plugins", "PluginConfig": "pluginconfig",
    "ClientInstruction": "messages", "ClientUpdate": "messages", "RoundReport": "messages",
    "FederatedDataset": "data",
}

__all__ = ["__version__", "hookimpl", "Component", "Dataset", "Peft", "Task", "Sampler",
           "Algorithm", "Privacy", "Evaluator", "Judge", "Codec", "Backend", "Command", "Preset",
           "Plugin", "PluginConfig", "ClientInstruction", "ClientUpdate", "RoundReport",
           "FederatedDataset"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fedllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fedllm.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .contract import (
        Algorithm,
        Backend,
        Command,
        Component,
        Dataset,
        Evaluator,
        Judge,
        Peft,
        Preset,
        Privacy,
        Sampler,
        Task,
        hookimpl,
    )
    from .data import FederatedDataset
    from .messages import ClientInstruction, ClientUpdate, RoundReport
    from .pluginconfig import PluginConfig
    from .plugins import Plugin
