"""fedllm: federated fine-tuning of LLMs with plugins for every moving part.

The public API for plugin authors is re-exported here: ``hookimpl``, ``Plugin``,
``PluginConfig``, the message types and the dataset contract.
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402
from .plugins import Plugin, PluginConfig  # noqa: E402
from .messages import ClientInstruction, ClientUpdate  # noqa: E402
from .data import FederatedDataset  # noqa: E402

__all__ = ["__version__", "hookimpl", "Plugin", "PluginConfig", "ClientInstruction",
           "ClientUpdate", "FederatedDataset"]
