"""Prompt templates: the text a model sees before the response it is trained to produce.

``alpaca`` and ``vicuna`` are the templates of OpenFedLLM / FedLLM-Bench; ``chat`` uses the
tokenizer's own chat template.
"""

from __future__ import annotations

from typing import cast

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that "
                "provides further context. Write a response that appropriately completes the "
                "request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
                "### Response:\n")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The "
                 "assistant gives helpful, detailed, and polite answers to the user's questions.")

TEMPLATES = ("alpaca", "vicuna", "chat")


def render(template: str, messages: list[dict[str, str]], tokenizer=None) -> str:
    """The prompt for ``messages`` (alternating user/assistant, ending with a user turn),
    up to where the assistant's answer starts."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt needs messages ending with a user turn")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("task.template: 'chat' needs a tokenizer with a chat template; "
                             "this tokenizer has none (use 'alpaca' or 'vicuna')")
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
    if template == "vicuna":
        return "".join(text for text, _ in vicuna_segments(messages, tokenizer))
    if template == "alpaca":
        if len(messages) != 1:  # alpaca is single-turn; earlier turns become context
            history = "\n".join(f"{m['role']}: {m['content']}" for m in messages[:-1])
            return ALPACA_INPUT.format(instruction=messages[-1]["content"], input=history)
        return ALPACA.format(instruction=messages[0]["content"])
    raise ValueError(f"unknown template {template!r}; choose one of {TEMPLATES}")


def vicuna_segments(messages: list[dict[str, str]], tokenizer=None) -> list[tuple[str, bool]]:
    """The vicuna rendering of ``messages`` as ``(text, is_assistant)`` pieces, so multi-turn
    SFT can label exactly the assistant answers (each followed by EOS). A leading system
    message replaces the default vicuna system prompt."""
    eos = getattr(tokenizer, "eos_token", None) or "</s>"
    system = VICUNA_SYSTEM
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    out: list[tuple[str, bool]] = [(system, False)]
    for m in messages:
        if m["role"] == "user":
            out.append((f" USER: {m['content']} ASSISTANT:", False))
        elif m["role"] == "assistant":  # right after "ASSISTANT:", as single-turn SFT
            out.append((f"{m['content']}{eos}", True))
    return out


def instruction_text(instruction: str, input: str | None) -> str:
    """Fold an optional alpaca-style ``input`` into the user turn."""
    return f"{instruction}\n\n{input}" if input else instruction


def encode_prompts(tok, prompts: list[str]) -> list[list[int]]:
    """Tokenize rendered prompts, adding the tokenizer's BOS unless the template wrote it."""
    bos = tok.bos_token
    has_bos = [bool(bos) and p.startswith(bos) for p in prompts]
    out: list[list[int] | None] = [None] * len(prompts)
    for flag in (False, True):
        rows = [i for i, b in enumerate(has_bos) if b == flag]
        if rows:
            enc = tok([prompts[i] for i in rows], add_special_tokens=not flag)["input_ids"]
            for i, ids in zip(rows, enc):
                out[i] = ids
    return cast("list[list[int]]", out)  # the two passes fill every row
