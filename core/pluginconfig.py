"""The base of every component's config (its own module, so that importing the plugin
machinery for ``fedllm --help`` does not import pydantic)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PluginConfig(BaseModel):
    """Base of every component's config: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
