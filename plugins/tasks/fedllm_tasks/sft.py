"""Supervised fine-tuning (instruction tuning): loss on response tokens only.

Samples are ``{instruction, response}`` with an optional ``input`` (alpaca style). The prompt
is rendered with the configured template; the response is followed by EOS; prompt and padding
positions get label -100 so only the response is learned.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl
from fedllm.errors import ConfigError, DataError

from .templates import ALPACA_INPUT, render

IGNORE = -100


class SFTConfig(PluginConfig):
    template: Literal["alpaca", "vicuna", "chat"] = Field(
        "alpaca", description="Prompt template: alpaca, vicuna (FedLLM-Bench) or the "
        "tokenizer's chat template.")
    max_length: int = Field(256, ge=8, description="Max tokens per sample (prompt + response).")
    overflow: Literal["truncate", "drop", "error"] = Field(
        "truncate", description="A sample longer than max_length: cut its end, drop it, or "
        "stop with an error.")


def pad_batch(examples: list[dict[str, Any]], pad_id: int, keys=("input_ids", "labels"),
              side: str = "right") -> dict[str, torch.Tensor]:
    """Pad token-id lists to the longest example; labels pad with -100."""
    longest = max(len(e["input_ids"]) for e in examples)
    out: dict[str, list[list[int]]] = {k: [] for k in keys}
    out["attention_mask"] = []
    for e in examples:
        n = len(e["input_ids"])
        gap = longest - n
        for k in keys:
            fill = IGNORE if k == "labels" else pad_id
            seq = list(e[k])
            out[k].append(seq + [fill] * gap if side == "right" else [fill] * gap + seq)
        mask = [1] * n
        out["attention_mask"].append(mask + [0] * gap if side == "right" else [0] * gap + mask)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


class SFT:
    def __init__(self, config: SFTConfig):
        self.config = config

    def _prompt(self, ctx, instruction: str, input: str | None) -> str:
        if self.config.template == "alpaca" and input:
            return ALPACA_INPUT.format(instruction=instruction, input=input)
        content = f"{instruction}\n\n{input}" if input else instruction
        return render(self.config.template, [{"role": "user", "content": content}],
                      ctx.tokenizer)

    @hookimpl
    def fedllm_prompt(self, ctx, messages):
        return render(self.config.template, messages, ctx.tokenizer)

    @hookimpl
    def fedllm_encode(self, ctx, batch, split):
        tok = ctx.tokenizer
        limit = getattr(ctx.model.config, "max_position_embeddings", None)
        if limit and self.config.max_length > limit:
            raise ConfigError(f"task.max_length: {self.config.max_length} exceeds the model's "
                              f"context of {limit} tokens (max_position_embeddings)")
        for field in ("instruction", "response"):
            if field not in batch:
                raise DataError(f"the sft task needs a {field!r} field in every sample; the "
                                f"dataset has {sorted(batch)}")
        n = len(batch["instruction"])
        inputs = batch.get("input") or [None] * n
        prompts, responses, keep = [], [], []
        for i in range(n):
            ins, resp = batch["instruction"][i], batch["response"][i]
            for field, v in (("instruction", ins), ("response", resp)):
                if not isinstance(v, str) or not v.strip():
                    raise DataError(f"client {batch['client_id'][i]!r}: a {split} sample has "
                                    f"no {field!r} (got {v!r})")
            prompts.append(self._prompt(ctx, ins, inputs[i]))
            responses.append(resp)
            keep.append(i)
        bos_in_text = self.config.template == "chat"
        p_ids = tok(prompts, add_special_tokens=not bos_in_text)["input_ids"]
        r_ids = tok(responses, add_special_tokens=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "labels": [], "client_id": []}
        for i, p, r in zip(keep, p_ids, r_ids):
            r = r + [tok.eos_token_id]
            ids, labels = p + r, [IGNORE] * len(p) + r
            if len(ids) > self.config.max_length:
                if self.config.overflow == "error":
                    raise DataError(
                        f"client {batch['client_id'][i]!r}: a {split} sample has {len(ids)} "
                        f"tokens, more than task.max_length={self.config.max_length} (set "
                        "task.overflow to 'truncate' or 'drop', or raise max_length)")
                if self.config.overflow == "drop":
                    continue
                ids, labels = ids[: self.config.max_length], labels[: self.config.max_length]
                if all(x == IGNORE for x in labels):
                    continue  # the prompt alone fills the window: nothing to learn
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["client_id"].append(batch["client_id"][i])
        return out

    @hookimpl
    def fedllm_collate(self, ctx, examples):
        return pad_batch(examples, ctx.tokenizer.pad_token_id)

    @hookimpl
    def fedllm_loss(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"])
        return out.loss, {}


plugin = Plugin(kind="task", name="sft", factory=SFT, Config=SFTConfig,
                description="Instruction tuning: loss on response tokens only.")
