"""Supervised fine-tuning (instruction tuning): loss on response tokens only.

Two sample shapes, both trained on the answer only:

* single-turn ``{instruction, response}`` with an optional ``input`` (alpaca style): the prompt
  is rendered with the configured template, the response is followed by EOS, and prompt and
  padding positions get label -100;
* multi-turn ``{messages: [{role, content}, ...]}`` (Fed-WildChat multi-turn): roles ``user`` /
  ``assistant`` with an optional leading ``system``; every assistant turn (and its EOS) is
  labelled, every other token is -100. Formatted with ``vicuna`` or the tokenizer's ``chat``
  template (alpaca is single-turn only).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin, hookimpl
from fedllm.errors import ConfigError, DataError

from .steps import DynamicSteps, StepsConfig
from .templates import ALPACA_INPUT, encode_prompts, render, vicuna_segments

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext

IGNORE = -100
ROLES = ("system", "user", "assistant")
GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class SFTConfig(StepsConfig):
    template: Literal["alpaca", "vicuna", "chat"] = Field(
        "alpaca", description="Prompt template: alpaca, vicuna (FedLLM-Bench) or the "
        "tokenizer's chat template.")
    max_length: int = Field(256, ge=8, description="Max tokens per sample (prompt + response).")
    overflow: Literal["truncate", "drop", "error"] = Field(
        "truncate", description="A sample longer than max_length: cut its end, drop it, or "
        "stop with an error.")
    padding_free: bool = Field(
        False, description="Pack a micro-batch's samples into one row (position ids restart "
        "per sample, block-diagonal attention) instead of padding them: no compute on padding; "
        "the loss is the padded batch's.")


def pack_batch(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A padding-free batch: the samples end to end in one row, ``position_ids`` restarting at
    each sample (transformers then masks attention block-diagonally) and the first label of
    each sample ignored, so that no token predicts across a boundary."""
    import torch

    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    for e in examples:
        n = len(e["input_ids"])
        ids += list(e["input_ids"])
        labels += [IGNORE, *list(e["labels"])[1:]]
        pos += list(range(n))
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([pos])}


def pad_batch(examples: list[dict[str, Any]], pad_id: int, keys=("input_ids", "labels"),
              side: str = "right") -> dict[str, torch.Tensor]:
    """Pad token-id lists to the longest example; labels pad with -100."""
    import torch

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


class SFT(DynamicSteps):
    def __init__(self, config: SFTConfig):
        self.config = config

    def _prompt(self, ctx, instruction: str, input: str | None) -> str:
        if self.config.template == "alpaca" and input:
            return ALPACA_INPUT.format(instruction=instruction, input=input)
        content = f"{instruction}\n\n{input}" if input else instruction
        return render(self.config.template, [{"role": "user", "content": content}],
                      ctx.tokenizer)

    @hookimpl
    def fedllm_prompt(self, ctx: RunContext, messages: list[dict[str, str]]) -> str:
        return render(self.config.template, messages, ctx.tokenizer)

    @hookimpl
    def fedllm_encode(self, ctx: RunContext, batch: dict[str, list[Any]],
                      split: str) -> dict[str, list[Any]]:
        check_max_length(ctx, self.config.max_length)
        cids = batch["client_id"]
        convs = batch.get("messages") or [None] * len(cids)
        single = [i for i, c in enumerate(convs) if not c]
        encoded = self._encode_single(ctx, batch, single, split) if single else {}
        out: dict[str, list] = {"input_ids": [], "labels": [], "client_id": []}
        for i, conv in enumerate(convs):
            ids, labels = (self._encode_conversation(ctx, conv, cids[i], split) if conv
                           else encoded[i])
            self._keep(out, ids, labels, cids[i], split)
        return out

    def _keep(self, out, ids, labels, client_id, split) -> None:
        """Apply task.overflow and append the sample unless it has nothing to learn."""
        if len(ids) > self.config.max_length:
            if self.config.overflow == "error":
                raise DataError(
                    f"client {client_id!r}: a {split} sample has {len(ids)} tokens, more than "
                    f"task.max_length={self.config.max_length} (set task.overflow to "
                    "'truncate' or 'drop', or raise max_length)")
            if self.config.overflow == "drop":
                return
            ids, labels = ids[: self.config.max_length], labels[: self.config.max_length]
        if all(x == IGNORE for x in labels):
            return  # the prompt alone fills the window: nothing to learn
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["client_id"].append(client_id)

    def _encode_single(self, ctx, batch, rows, split) -> dict[int, tuple[list, list]]:
        """Tokenize the single-turn rows in one batched call: {row: (ids, labels)}."""
        tok = ctx.tokenizer
        for field in ("instruction", "response"):
            if field not in batch:
                raise DataError(f"the sft task needs 'instruction' and 'response' fields (or a "
                                f"'messages' conversation) in every sample; the dataset has "
                                f"{sorted(batch)}")
        inputs = batch.get("input") or [None] * len(batch["client_id"])
        prompts, responses = [], []
        for i in rows:
            ins, resp = batch["instruction"][i], batch["response"][i]
            for field, v in (("instruction", ins), ("response", resp)):
                if not isinstance(v, str) or not v.strip():
                    raise DataError(f"client {batch['client_id'][i]!r}: a {split} sample has "
                                    f"no {field!r} (got {v!r})")
            prompts.append(self._prompt(ctx, ins, inputs[i]))
            responses.append(resp)
        p_ids = encode_prompts(tok, prompts)
        r_ids = tok(responses, add_special_tokens=False)["input_ids"]
        out = {}
        for i, p, r in zip(rows, p_ids, r_ids):
            r = r + [tok.eos_token_id]
            out[i] = (p + r, [IGNORE] * len(p) + r)
        return out

    def _encode_conversation(self, ctx, messages, client_id, split):
        messages = check_messages(messages, client_id, split)
        tok = ctx.tokenizer
        template = self.config.template
        if template == "alpaca":
            raise ConfigError("task.template: 'alpaca' is single-turn; multi-turn "
                              "'messages' samples need 'vicuna' or 'chat'")
        if template == "chat":
            if not getattr(tok, "chat_template", None):
                raise ConfigError("task.template: 'chat' needs a tokenizer with a chat "
                                  "template; this tokenizer has none (use 'vicuna')")
            if GENERATION_MARK.search(tok.chat_template):
                # The template marks assistant text itself: let transformers build the mask.
                enc = tok.apply_chat_template([messages], tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
                ids, mask = list(enc["input_ids"][0]), list(enc["assistant_masks"][0])
                if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
                    # the template wrote no BOS: add it, as single-turn prompts get it
                    ids, mask = [tok.bos_token_id, *ids], [0, *mask]
                return ids, [t if m else IGNORE for t, m in zip(ids, mask)]
            text, spans = chat_spans(tok, messages, client_id, split)
        else:
            text, spans, pos = "", [], 0
            for piece, is_assistant in vicuna_segments(messages, tok):
                if is_assistant:
                    spans.append((pos, pos + len(piece)))
                text += piece
                pos += len(piece)
        return label_spans(tok, text, spans)

    @hookimpl
    def fedllm_collate(self, ctx: RunContext,
                       examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.config.padding_free:
            return pack_batch(examples)
        return pad_batch(examples, ctx.tokenizer.pad_token_id)

    @hookimpl
    def fedllm_loss(self, ctx: RunContext, model: Any, batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        if "position_ids" in batch:  # packed: no mask, and no cache (it would join samples)
            out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                        labels=batch["labels"], use_cache=False)
        else:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=batch["labels"])
        return out.loss, {}


def check_max_length(ctx, max_length: int) -> None:
    limit = getattr(ctx.model.config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise ConfigError(f"task.max_length: {max_length} exceeds the model's context of "
                          f"{limit} tokens (max_position_embeddings)")


def check_messages(messages, client_id, split, need_answer: bool = True) -> list[dict[str, str]]:
    """A conversation must be user/assistant turns (optional leading system), each assistant
    turn answering a user turn, with at least one assistant turn to learn from (unless
    ``need_answer`` is false: a prompt)."""
    where = f"client {client_id!r}: a {split} conversation"
    if not isinstance(messages, list):
        raise DataError(f"{where} must be a list of {{role, content}}, got "
                        f"{type(messages).__name__}")
    out, last = [], None
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {j} needs a string 'content' (got {m!r})")
        role = m.get("role")
        if role not in ROLES:
            raise DataError(f"{where}: message {j} has role {role!r}; allowed: {', '.join(ROLES)}")
        if role == "system" and j != 0:
            raise DataError(f"{where}: message {j} is a system message; only the first may be")
        if role == "assistant" and last != "user":
            raise DataError(f"{where}: message {j} is an assistant turn that answers no user "
                            f"turn (previous role {last!r})")
        out.append({"role": role, "content": m["content"]})
        last = role
    if need_answer and not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where} has no assistant turn to learn from")
    return out


def chat_spans(tok, messages, client_id, split) -> tuple[str, list[tuple[int, int]]]:
    """Character spans of the assistant turns in the chat-template rendering, found as the
    text each assistant message adds after the generation prompt (for templates without
    ``{% generation %}`` markers)."""
    spans = []
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tok.apply_chat_template(messages[:j], tokenize=False, add_generation_prompt=True)
        upto = tok.apply_chat_template(messages[: j + 1], tokenize=False)
        if not upto.startswith(before):
            raise DataError(f"client {client_id!r}: the tokenizer's chat template does not render "
                            f"this {split} conversation incrementally, so its assistant turns "
                            "cannot be located; use a template with {% generation %} markers "
                            "or task.template=vicuna")
        spans.append((len(before), len(upto)))
    text = tok.apply_chat_template(messages, tokenize=False)
    return text, spans


def label_spans(tok, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Tokenize ``text`` and label the tokens that overlap an assistant character span."""
    if not getattr(tok, "is_fast", False):
        raise ConfigError("multi-turn sft needs a fast tokenizer (character offsets)")
    bos = tok.bos_token
    enc = tok(text, add_special_tokens=not (bos and text.startswith(bos)),
              return_offsets_mapping=True)
    ids, labels = enc["input_ids"], []
    for t, (a, b) in zip(ids, enc["offset_mapping"]):
        inside = b > a and any(a < e and b > s for s, e in spans)
        labels.append(t if inside else IGNORE)
    return ids, labels


plugin = Plugin(kind="task", name="sft", factory=SFT, Config=SFTConfig,
                description="Instruction tuning (single- and multi-turn): loss on answer "
                "tokens only.")
