"""Batched generation for evaluators: left padding, KV cache, greedy by default.

Prompts are rendered by the task's ``fedllm_prompt`` so that generation sees the template the
model was trained on, and tokenized as the task tokenizes them (BOS added unless the rendered
text already starts with it, as a chat template's does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedllm import lazy

from .progress import progress

if TYPE_CHECKING:
    import torch
else:
    torch = lazy.module('torch')



def _tokenize(tok, texts: list[str], max_len: int) -> list[list[int]]:
    out = []
    for t in texts:
        add = not (tok.bos_token and t.startswith(tok.bos_token))
        ids = tok(t, add_special_tokens=add, verbose=False)["input_ids"]
        out.append(ids[-max_len:] if len(ids) > max_len else ids)  # keep the end: the question
    return out


@lazy.no_grad
def generate_texts(model, tok, texts: list[str], *, max_new_tokens: int = 256,
                   batch_size: int = 8, temperature: float = 0.0, top_p: float = 1.0,
                   seed: int = 0, on_progress=None) -> list[str]:
    """Generate one continuation per text; returns the decoded new tokens only.
    ``on_progress(done)`` is called after each batch."""
    if not texts:
        return []
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 4096
    max_len = max(8, limit - max_new_tokens)
    encoded = _tokenize(tok, texts, max_len)
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))  # similar lengths batch
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    was_training = model.training
    model.eval()
    results: list[str] = [""] * len(texts)
    gen = dict(max_new_tokens=max_new_tokens, use_cache=True, pad_token_id=pad,
               eos_token_id=tok.eos_token_id)
    if temperature > 0:
        gen.update(do_sample=True, temperature=temperature, top_p=top_p)
        torch.manual_seed(seed)
    else:
        gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            longest = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), longest), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding: every prompt ends at the same column
                n = len(encoded[i])
                ids[row, longest - n:] = torch.tensor(encoded[i])
                mask[row, longest - n:] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen)
            for row, i in enumerate(idx):
                results[i] = tok.decode(out[row, longest:], skip_special_tokens=True)
            if on_progress is not None:
                on_progress(s + len(idx))
    finally:
        if was_training:
            model.train()
    return results


def render_prompts(ctx, conversations: list[list[dict[str, str]]]) -> list[str]:
    """The training template applied to each conversation (ending with a user turn)."""
    out = []
    for messages in conversations:
        text = ctx.call("fedllm_prompt", messages=messages)
        if text is None:
            raise RuntimeError("the task implements no fedllm_prompt; generation evaluators "
                               "need one to apply the training template")
        out.append(text)
    return out


def generate_answers(ctx, model, conversations: list[list[dict[str, str]]],
                     cfg: Any, description: str = "generating") -> list[str]:
    """Render with the task template and generate with the evaluator's settings (with a
    progress bar on a terminal)."""
    texts = render_prompts(ctx, conversations)
    with progress(ctx, description, len(texts)) as update:
        return [a.strip() for a in generate_texts(
            model, ctx.tokenizer, texts, max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size, temperature=cfg.temperature,
            seed=getattr(cfg, "seed", 0), on_progress=update)]
