"""Errors a user can act on. The CLI prints their message (no traceback) and exits 2."""


class FedLLMError(Exception):
    """Base class: a clear, user-facing problem (bad config, missing file, broken plugin)."""


class ConfigError(FedLLMError):
    """The run configuration is invalid; the message lists every problem with its field."""


class PluginNotFoundError(FedLLMError):
    """A selected plugin is not installed."""


class PluginLoadError(FedLLMError):
    """A selected plugin's entry point failed to import."""


class DataError(FedLLMError):
    """A dataset file or sample is missing, malformed or unusable."""


class RunDirError(FedLLMError):
    """A run directory is missing, not a run, or would be overwritten."""
