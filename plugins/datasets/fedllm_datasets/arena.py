"""Shared by Fed-ChatbotIT and Fed-ChatbotPA (FedLLM-Bench): Chatbot Arena's votes.

Both use one client per ``judge`` (the arena user who voted) and only votes for one side
(``winner`` model_a / model_b; ties carry no preference). From each vote, the first user turn
is the instruction / prompt; Fed-ChatbotIT keeps the response the user preferred (SFT),
Fed-ChatbotPA keeps (prompt, chosen = preferred, rejected = other) for DPO.
"""

from __future__ import annotations

from pydantic import Field

from fedllm.data import CLIENT

from .common import SourceConfig, load_source, require_columns

COLUMNS = ["judge", "winner", "model_a", "model_b", "conversation_a", "conversation_b"]


class ArenaConfig(SourceConfig):
    source: str = Field("lmsys/chatbot_arena_conversations", description="Chatbot Arena "
                        "conversations hub id, or a local copy with its columns.")
    languages: list[str] | None = Field(None, description="Keep only conversations whose "
                                        "`language` is one of these (e.g. ['English']); "
                                        "default all.")


def _first(conv, role):
    for turn in conv or []:
        if turn.get("role") == role:
            return turn.get("content")
    return None


def _pairs(batch):
    """Batched map: one row per decisive vote with the first exchange of both sides."""
    out = {CLIENT: [], "prompt": [], "chosen": [], "rejected": [], "language": []}
    langs = batch.get("language") or [None] * len(batch["judge"])
    for judge, winner, a, b, lang in zip(batch["judge"], batch["winner"], batch["conversation_a"],
                                         batch["conversation_b"], langs):
        if winner not in ("model_a", "model_b"):
            continue
        prompt = _first(a, "user") or _first(b, "user")
        ra, rb = _first(a, "assistant"), _first(b, "assistant")
        if not prompt or ra is None or rb is None:
            continue
        chosen, rejected = (ra, rb) if winner == "model_a" else (rb, ra)
        out[CLIENT].append(str(judge))
        out["prompt"].append(prompt)
        out["chosen"].append(chosen)
        out["rejected"].append(rejected)
        out["language"].append(lang)
    return out


def votes(c: ArenaConfig, name: str):
    ds = load_source(c)
    require_columns(ds, COLUMNS, f"{name} source {c.source!r}")
    before = len(ds)
    if c.languages is not None and "language" in ds.column_names:
        keep = set(c.languages)
        ds = ds.filter(lambda lang: lang in keep, input_columns="language")
    ds = ds.map(_pairs, batched=True, remove_columns=ds.column_names)
    return ds, {"conversations": before, "decisive_votes": len(ds)}
