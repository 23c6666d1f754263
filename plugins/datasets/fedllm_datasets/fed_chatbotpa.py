"""Fed-ChatbotPA (FedLLM-Bench): one client per Chatbot Arena judge; each non-tie vote gives
(prompt, chosen = the preferred side's answer, rejected = the other's) for DPO; judges with
>= 5 pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from fedllm import Plugin, hookimpl

from .arena import ArenaConfig, votes
from .common import SourceDataset, cached_build, finish

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class ChatbotPAConfig(ArenaConfig):
    min_samples: int = Field(5, ge=1, description="Keep judges with at least this many "
                             "preference pairs.")


class FedChatbotPA(SourceDataset):
    def __init__(self, config: ChatbotPAConfig):
        self.config = config

    def build(self):
        c = self.config
        ds, info = votes(c, "fed-chatbotpa")
        return finish(ds, c, min_samples=c.min_samples, what="fed-chatbotpa",
                      fields=["prompt", "chosen", "rejected"], meta_columns=["language"],
                      info={"task": "dpo", **info})

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        return cached_build("fed-chatbotpa", self.config, self.build)


plugin = Plugin(kind="dataset", name="fed-chatbotpa", factory=FedChatbotPA,
                Config=ChatbotPAConfig,
                description="FedLLM-Bench Fed-ChatbotPA: arena judges as clients, (prompt, "
                "chosen, rejected) from non-tie votes (>= 5 each).")
