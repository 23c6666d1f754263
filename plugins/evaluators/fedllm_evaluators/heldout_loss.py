"""Loss and perplexity of the global model on each client's held-out split.

Uses the task's own collation and loss, so it measures exactly what training optimises.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Evaluator, Plugin, PluginConfig, hookimpl, lazy

from .common import write_report

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext
else:
    torch = lazy.module('torch')


class HeldoutLossConfig(PluginConfig):
    batch_size: int = Field(8, ge=1)
    max_samples_per_client: int | None = Field(
        None, ge=1, description="Cap per client (None: the whole held-out split).")
    per_client: bool = Field(True, description="Also report each client's loss.")


class HeldoutLoss(Evaluator):
    name = "heldout-loss"

    def __init__(self, config: HeldoutLossConfig):
        self.config = config

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        from accelerate.utils import send_to_device

        rows = ctx.rows.get("heldout")
        if not rows:
            return {"error": "the dataset has no held-out split (set dataset.heldout)"}
        members = set(ctx.cohorts.get(cohort, rows))
        total = weight = 0.0
        per: dict[str, float] = {}
        with torch.no_grad():
            for cid, idx in rows.items():
                if cid not in members:
                    continue
                data = ctx.encoded["heldout"].select(idx[: self.config.max_samples_per_client])
                examples = data.to_list()
                c_loss = c_n = 0.0
                for i in range(0, len(examples), self.config.batch_size):
                    chunk = examples[i:i + self.config.batch_size]
                    batch = send_to_device(ctx.call("fedllm_collate", examples=chunk),
                                           ctx.device)
                    loss, _ = ctx.call("fedllm_loss", model=model, batch=batch)
                    c_loss += float(loss) * len(chunk)
                    c_n += len(chunk)
                per[cid] = c_loss / c_n
                total += c_loss
                weight += c_n
        loss = total / weight
        out: dict[str, Any] = {"loss": loss, "ppl": math.exp(min(loss, 50)),
                               "samples": int(weight)}
        write_report(ctx, self.name, cohort, round, {
            "loss": loss, "ppl": out["ppl"], "samples": out["samples"],
            "clients": {c: {"loss": v, "ppl": math.exp(min(v, 50))} for c, v in per.items()}})
        if self.config.per_client:
            out["clients"] = per
        return out


plugin = Plugin(kind="evaluator", name="heldout-loss", factory=HeldoutLoss,
                Config=HeldoutLossConfig,
                description="Loss / perplexity of the global model on each client's held-out "
                "split.")
