"""Fed-WildChat (FedLLM-Bench): WildChat-1M conversations, one client per ``hashed_ip``.

Single-turn (the paper's default): each conversation's first exchange becomes (instruction,
response). Multi-turn: the whole conversation becomes ``messages`` (a list of {role, content}),
for conversations with at least ``min_turns`` exchanges. The paper's multi-turn release has 50
clients but does not document its rule, so its threshold and minimum turns are fields here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from fedllm import Plugin, hookimpl
from fedllm.data import CLIENT

from .common import (
    SourceConfig,
    SourceDataset,
    cached_build,
    finish,
    load_source,
    require_columns,
)

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class WildChatConfig(SourceConfig):
    source: str = Field("allenai/WildChat-1M", description="WildChat-1M hub id (the older "
                        "allenai/WildChat has no hashed_ip), or a local copy with its columns.")
    multi_turn: bool = Field(False, description="Whole conversations as `messages` (multi-turn "
                             "SFT) instead of the first exchange as instruction/response.")
    min_samples: int = Field(200, ge=1, description="Keep IPs with at least this many "
                             "conversations (after the turn filter).")
    min_turns: int | None = Field(None, ge=1, description="Keep conversations with at least this "
                                  "many user/assistant exchanges; default 1 single-turn, 2 "
                                  "multi-turn.")
    languages: list[str] | None = Field(None, description="Keep only conversations whose "
                                        "`language` is one of these (e.g. ['English']); "
                                        "default all.")

    @model_validator(mode="after")
    def _default_turns(self):
        if self.min_turns is None:
            self.min_turns = 2 if self.multi_turn else 1
        return self


def _rows(multi: bool, min_turns: int):
    def fn(batch):
        out = {CLIENT: [], "language": [], "country": []}
        if multi:
            out["messages"] = []
        else:
            out["instruction"], out["response"] = [], []
        n = len(batch["hashed_ip"])
        for i in range(n):
            conv = batch["conversation"][i] or []
            msgs = [{"role": t["role"], "content": t["content"]} for t in conv
                    if t.get("role") in ("user", "assistant") and t.get("content") is not None]
            turns = sum(1 for m in msgs if m["role"] == "assistant")
            if turns < min_turns or not msgs or msgs[0]["role"] != "user":
                continue
            if multi:
                out["messages"].append(msgs)
            else:
                first_answer = next(m["content"] for m in msgs if m["role"] == "assistant")
                out["instruction"].append(msgs[0]["content"])
                out["response"].append(first_answer)
            out[CLIENT].append(str(batch["hashed_ip"][i]))
            out["language"].append((batch.get("language") or [None] * n)[i])
            out["country"].append((batch.get("country") or [None] * n)[i])
        return out
    return fn


class FedWildChat(SourceDataset):
    def __init__(self, config: WildChatConfig):
        self.config = config

    def build(self):
        c = self.config
        ds = load_source(c)
        require_columns(ds, ["conversation", "hashed_ip"], f"fed-wildchat source {c.source!r}")
        before = len(ds)
        if c.languages is not None and "language" in ds.column_names:
            keep = set(c.languages)
            ds = ds.filter(lambda lang: lang in keep, input_columns="language")
        ds = ds.map(_rows(c.multi_turn, c.min_turns), batched=True,
                    remove_columns=ds.column_names)
        fields = ["messages"] if c.multi_turn else ["instruction", "response"]
        return finish(ds, c, min_samples=c.min_samples, what="fed-wildchat",
                      fields=fields, meta_columns=["language", "country"],
                      info={"task": "multi-turn sft" if c.multi_turn else "sft",
                            "conversations": before, "after_turn_filter": len(ds)})

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        return cached_build("fed-wildchat", self.config, self.build)


plugin = Plugin(kind="dataset", name="fed-wildchat", factory=FedWildChat, Config=WildChatConfig,
                description="FedLLM-Bench Fed-WildChat: WildChat-1M IPs as clients (>= 200 "
                "each), single- or multi-turn.")
