"""MMLU: 57-subject multiple choice, scored by the log-likelihood of the answer letters.

The prompt is Hendrycks et al.'s format (a subject header, k solved examples from the subject's
``dev`` split, then the question ending in ``Answer:``); the prediction is the letter whose
continuation (`` A`` … `` D``) the model finds most likely. Nothing is generated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from fedllm import Evaluator, Plugin, PluginConfig, hookimpl, lazy
from fedllm.errors import DataError

from .common import load_rows, write_report

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext
else:
    torch = lazy.module('torch')

LETTERS = "ABCDEFGHIJ"


class MMLUConfig(PluginConfig):
    path: str = Field("cais/mmlu", description="Questions: HF id or a file/dir in the cais/mmlu "
                      "layout (question, subject, choices, answer index).")
    subset: str = Field("all", description="HF config name ('all' or one subject).")
    split: str = Field("test", description="Split scored.")
    dev_path: str | None = Field(None, description="k-shot examples (default: the 'dev' split "
                                 "of `path` when it is an HF id).")
    shots: list[int] = Field([0, 5], description="Evaluate zero-shot and k-shot (each k listed).")
    use_template: bool = Field(False, description="Wrap the question in the task's prompt "
                               "template (default: the plain MMLU format).")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    max_samples: int | None = Field(None, ge=1, description="Score only the first N questions.")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        if not v or any(k < 0 for k in v):
            raise ValueError("must list one or more shot counts >= 0, e.g. [0, 5]")
        return sorted(set(v))


def _question(row: dict[str, Any], field: str) -> tuple[str, list[str], int]:
    try:
        q, choices, ans = row["question"], list(row["choices"]), row["answer"]
    except KeyError as exc:
        raise DataError(f"{field}: a record lacks {exc} (cais/mmlu layout: question, subject, "
                        f"choices, answer); it has {sorted(row)}") from None
    if isinstance(ans, str):
        ans = LETTERS.index(ans) if ans in LETTERS else int(ans)
    if not 0 <= int(ans) < len(choices):
        raise DataError(f"{field}: answer {ans!r} is out of range for {len(choices)} choices")
    return q, choices, int(ans)


def format_example(row: dict[str, Any], field: str, with_answer: bool) -> str:
    q, choices, ans = _question(row, field)
    text = q.strip() + "\n" + "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
    return text + "Answer:" + (f" {LETTERS[ans]}\n\n" if with_answer else "")


def header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about " \
           f"{subject.replace('_', ' ')}.\n\n"


@lazy.no_grad
def continuation_logprobs(model, tok, prompts: list[str], conts: list[list[str]],
                          batch_size: int = 8) -> list[list[float]]:
    """log P(cont | prompt) for each prompt and each of its continuations.

    When a prompt's continuations differ only in their last token (`` A``/`` B`` …), one
    forward pass over the prompt plus the shared part scores all of them (the shared part's
    log-probability is the same for every choice, so it is left out of the comparison)."""
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 4096
    seqs: list[tuple[list[int], list[tuple[int, int, int, int]]]] = []
    # seqs: (token ids, [(prompt index, choice index, position, token)])
    for pi, (p, cs) in enumerate(zip(prompts, conts)):
        add = not (tok.bos_token and p.startswith(tok.bos_token))
        p_ids = tok(p, add_special_tokens=add, verbose=False)["input_ids"]
        c_ids = []
        for c in cs:
            full = tok(p + c, add_special_tokens=add, verbose=False)["input_ids"]
            c_ids.append(full[len(p_ids):] if full[:len(p_ids)] == p_ids
                         else tok(c, add_special_tokens=False)["input_ids"])
        shared = c_ids[0][:-1]
        if all(len(x) == len(c_ids[0]) and x[:-1] == shared for x in c_ids):
            ids = (p_ids + shared)[-(limit):]
            seqs.append((ids, [(pi, ci, len(ids) - 1, x[-1]) for ci, x in enumerate(c_ids)]))
        else:
            for ci, x in enumerate(c_ids):
                ids = (p_ids + x)[-(limit + 1):]
                n = len(ids)
                seqs.append((ids[:-1], [(pi, ci, n - 1 - len(x) + j, x[j])
                                        for j in range(len(x))]))
    out = [[0.0] * len(cs) for cs in conts]
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(seqs), batch_size):
            chunk = seqs[s:s + batch_size]
            longest = max(len(ids) for ids, _ in chunk)
            ids_t = torch.full((len(chunk), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for row, (ids, _) in enumerate(chunk):  # right padding: positions start at 0
                ids_t[row, :len(ids)] = torch.tensor(ids)
                mask[row, :len(ids)] = 1
            logits = model(input_ids=ids_t.to(device), attention_mask=mask.to(device)).logits
            # prompt-learning adapters (prompt / p-tuning) prepend virtual tokens to the
            # outputs: keep the positions of the real tokens
            logits = logits[:, -longest:]
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, (_, targets) in enumerate(chunk):
                for pi, ci, pos, token in targets:
                    out[pi][ci] += float(logp[row, pos, token])
    finally:
        if was_training:
            model.train()
    return out


class MMLU(Evaluator):
    name = "mmlu"
    needs_data = False

    def __init__(self, config: MMLUConfig):
        self.config = config

    def _dev(self) -> dict[str, list[dict]]:
        c = self.config
        if max(c.shots) == 0:
            return {}
        if c.dev_path:
            rows = load_rows(c.dev_path, field="mmlu.dev_path", split="dev", subset=c.subset)
        elif not __import__("pathlib").Path(c.path).exists():
            rows = load_rows(c.path, field="mmlu.path", split="dev", subset=c.subset)
        else:
            raise DataError(f"mmlu.dev_path: shots {c.shots} need k-shot examples; give "
                            "dev_path (the cais/mmlu 'dev' split) or use shots: [0]")
        by: dict[str, list[dict]] = {}
        for r in rows:
            by.setdefault(r.get("subject", ""), []).append(r)
        return by

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        c = self.config
        rows = load_rows(c.path, field="mmlu.path", split=c.split, subset=c.subset)
        rows = rows[: c.max_samples] if c.max_samples else rows
        dev = self._dev()
        scores: dict[str, Any] = {"n": len(rows)}
        items: list[dict[str, Any]] = [{"subject": r.get("subject", ""),
                                        "question": r.get("question"),
                                        "answer": LETTERS[_question(r, "mmlu.path")[2]]}
                                       for r in rows]
        for k in c.shots:
            prompts, conts = [], []
            for r in rows:
                subject = r.get("subject", "")
                shots = dev.get(subject, [])[:k]
                text = header(subject) + "".join(format_example(x, "mmlu.dev_path", True)
                                                 for x in shots)
                text += format_example(r, "mmlu.path", False)
                if c.use_template:
                    text = ctx.call("fedllm_prompt", messages=[{"role": "user",
                                                                "content": text}])
                prompts.append(text)
                conts.append([f" {LETTERS[i]}" for i in range(len(r["choices"]))])
            lls = continuation_logprobs(model, ctx.tokenizer, prompts, conts, c.batch_size)
            per: dict[str, list[int]] = {}
            for item, ll in zip(items, lls):
                pred = LETTERS[max(range(len(ll)), key=ll.__getitem__)]
                item[f"pred_{k}shot"] = pred
                item[f"loglik_{k}shot"] = ll
                per.setdefault(item["subject"], []).append(int(pred == item["answer"]))
            hits = [h for v in per.values() for h in v]
            scores[f"acc_{k}shot"] = sum(hits) / len(hits) if hits else None
            scores[f"subjects_{k}shot"] = {s: sum(v) / len(v) for s, v in sorted(per.items())}
            scores[f"shots_available_{k}shot"] = min((len(dev.get(s, [])) for s in per),
                                                     default=0) if k else 0
        write_report(ctx, self.name, cohort, round, {"scores": scores, "items": items,
                                                     "config": c.model_dump(mode="json")})
        return scores


plugin = Plugin(kind="evaluator", name="mmlu", factory=MMLU, Config=MMLUConfig,
                description="MMLU: per-subject accuracy from the log-likelihood of the answer "
                "letters (zero- and k-shot).")
