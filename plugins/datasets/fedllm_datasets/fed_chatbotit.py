"""Fed-ChatbotIT (FedLLM-Bench): one client per Chatbot Arena judge; each decisive vote gives
(first user turn, the response the user preferred) for SFT; judges with >= 10 votes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from fedllm import Plugin, hookimpl

from .arena import ArenaConfig, votes
from .common import SourceDataset, cached_build, finish

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class ChatbotITConfig(ArenaConfig):
    min_samples: int = Field(10, ge=1, description="Keep judges with at least this many "
                             "decisive votes.")


class FedChatbotIT(SourceDataset):
    def __init__(self, config: ChatbotITConfig):
        self.config = config

    def build(self):
        c = self.config
        ds, info = votes(c, "fed-chatbotit")
        ds = ds.rename_columns({"prompt": "instruction", "chosen": "response"})
        return finish(ds, c, min_samples=c.min_samples, what="fed-chatbotit",
                      fields=["instruction", "response"], meta_columns=["language"],
                      info={"task": "sft", **info})

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        return cached_build("fed-chatbotit", self.config, self.build)


plugin = Plugin(kind="dataset", name="fed-chatbotit", factory=FedChatbotIT,
                Config=ChatbotITConfig,
                description="FedLLM-Bench Fed-ChatbotIT: arena judges as clients, instruction + "
                "preferred response (>= 10 each).")
