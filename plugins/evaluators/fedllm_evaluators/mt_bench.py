"""MT-Bench: 80 two-turn questions graded 1–10 by a judge (single-answer grading).

Math, reasoning and coding use MT-Bench's reference-guided prompts with the GPT-4 reference
answers; the second turn is graded with the multi-turn prompts on the whole conversation.
Reports MT-1, MT-2, their mean (over all judgments, as FastChat does) and the same per category.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, hookimpl
from fedllm.errors import ConfigError, DataError

from .common import (
    JudgedBase,
    JudgedFields,
    first_of,
    load_rows,
    summarize,
    write_report,
)
from .generation import generate_answers
from .progress import grade

if TYPE_CHECKING:
    from fedllm.context import RunContext

NEED_REF = ("math", "reasoning", "coding")


class MTBenchConfig(JudgedFields):
    questions: str = Field("HuggingFaceH4/mt_bench_prompts", description="Questions: HF id or "
                           "path (FastChat question.jsonl with 'turns', or 'prompt' lists).")
    references: str | None = Field(None, description="GPT-4 reference answers "
                                   "(FastChat reference_answer/gpt-4.jsonl); not needed when "
                                   "the questions carry a 'reference' column.")
    judge_prompts: str | None = Field(None, description="MT-Bench judge_prompts.jsonl "
                                      "(FastChat llm_judge/data/judge_prompts.jsonl).")
    split: str = Field("train", description="Split of the HF dataset.")
    max_new_tokens: int = Field(1024, ge=1, description="Max tokens per answer (FastChat: 1024).")
    question_ids: list[int] | None = Field(None, description="Only these question ids "
                                           "(None: all).")


def load_judge_prompts(path: str | None, field: str) -> dict[str, dict[str, Any]]:
    if not path:
        raise ConfigError(f"{field}: the path of MT-Bench's judge_prompts.jsonl is required "
                          "(FastChat fastchat/llm_judge/data/judge_prompts.jsonl)")
    prompts = {r["name"]: r for r in load_rows(path, field=field)}
    return prompts


def need(prompts: dict[str, dict[str, Any]], name: str, field: str) -> dict[str, Any]:
    if name not in prompts:
        raise DataError(f"{field}: judge prompt {name!r} is missing (have {sorted(prompts)})")
    return prompts[name]


class MTBench(JudgedBase):
    name = "mt-bench"
    needs_data = False

    def __init__(self, config: MTBenchConfig):
        super().__init__(config)
        self._prompts: dict[str, dict[str, Any]] | None = None

    @property
    def prompts(self) -> dict[str, dict[str, Any]]:
        if self._prompts is None:
            self._prompts = load_judge_prompts(self.config.judge_prompts,
                                               "mt-bench.judge_prompts")
        return self._prompts

    def problems(self, ctx) -> list[str]:
        if not self.config.judge:
            return ["mt-bench.judge: MT-Bench needs a judge (e.g. {name: openai-compatible, "
                    "model: gpt-4}); got null"]
        try:  # read now, so a missing file fails before training or generation starts
            _ = self.prompts
        except (ConfigError, DataError) as exc:
            return [str(exc)]
        return []

    def _load(self):
        c = self.config
        rows = load_rows(c.questions, field="mt-bench.questions", split=c.split)
        if c.question_ids is not None:
            wanted = set(c.question_ids)
            rows = [r for r in rows if r.get("question_id") in wanted]
            if len(rows) != len(wanted):
                found = {r.get("question_id") for r in rows}
                raise DataError(f"mt-bench.question_ids: {sorted(wanted - found)} are not in "
                                f"{c.questions!r}")
        rows = rows[: c.max_samples] if c.max_samples else rows
        refs: dict[Any, list[str]] = {}
        if c.references:
            for r in load_rows(c.references, field="mt-bench.references"):
                refs[r["question_id"]] = r["choices"][0]["turns"]
        items = []
        for r in rows:
            turns = first_of(r, ("turns", "prompt"), "mt-bench.questions")
            if len(turns) < 2:
                raise DataError(f"mt-bench.questions: question {r.get('question_id')} has "
                                f"{len(turns)} turn(s); MT-Bench needs 2")
            ref = refs.get(r.get("question_id")) or r.get("reference") or None
            items.append({"question_id": r.get("question_id", r.get("prompt_id")),
                          "category": r.get("category", "general"), "turns": turns[:2],
                          "reference": ref})
        return items

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        c = self.config
        prompts = self.prompts
        items = self._load()
        self.judge.preflight()  # before any generation work
        a1 = generate_answers(ctx, model, [[{"role": "user", "content": it["turns"][0]}]
                                           for it in items], c, "mt-bench: generating turn 1")
        a2 = generate_answers(ctx, model, [[
            {"role": "user", "content": it["turns"][0]},
            {"role": "assistant", "content": a},
            {"role": "user", "content": it["turns"][1]}] for it, a in zip(items, a1)], c,
                              "mt-bench: generating turn 2")
        requests, used = [], []
        for turn in (1, 2):
            for it, x1, x2 in zip(items, a1, a2):
                ref = it["reference"] if it["category"] in NEED_REF else None
                name = ("single-math-v1" if ref else "single-v1") + \
                    ("-multi-turn" if turn == 2 else "")
                p = need(prompts, name, "mt-bench.judge_prompts")
                kw = dict(question=it["turns"][0], answer=x1, question_1=it["turns"][0],
                          question_2=it["turns"][1], answer_1=x1, answer_2=x2,
                          ref_answer_1=ref[0] if ref else "",
                          ref_answer_2=ref[1] if ref and len(ref) > 1 else "")
                requests.append((p["system_prompt"], p["prompt_template"].format(**kw)))
                used.append(name)
        version = "mt-bench-" + "+".join(sorted(set(used)))
        graded = grade(ctx, self.judge, "mt-bench: judging",
                       requests, repeats=c.judge_repeats, prompt_version=version)
        n = len(items)
        ratings = [[g["rating"] for g in item] for item in graded]
        cats = [it["category"] for it in items]
        t1 = summarize(ratings[:n], cats, c.unparsed)
        t2 = summarize(ratings[n:], cats, c.unparsed)
        both = summarize(ratings, cats + cats, c.unparsed)
        categories = {cat: {"mt1": t1["groups"][cat]["score"], "mt2": t2["groups"][cat]["score"],
                            "score": both["groups"][cat]["score"]} for cat in both["groups"]}
        scores = {"mt1": t1["score"], "mt2": t2["score"], "score": both["score"],
                  "sd": both["sd"], "mt1_sd": t1["sd"], "mt2_sd": t2["sd"], "n": n,
                  "unparsed": both["unparsed"], "judgments": both["judgments"]}
        records = []
        for i, it in enumerate(items):
            records.append({**it, "answers": [a1[i], a2[i]],
                            "judge_prompts": [used[i], used[n + i]],
                            "judgments": [graded[i], graded[n + i]]})
        write_report(ctx, self.name, cohort, round, {
            "scores": scores, "categories": categories,
            "judge": self.judge_record(version), "generation": _gen(c), "items": records})
        return {**scores, "categories": categories}


def _gen(c) -> dict[str, Any]:
    return {"max_new_tokens": c.max_new_tokens, "temperature": c.temperature,
            "batch_size": c.batch_size}


plugin = Plugin(kind="evaluator", name="mt-bench", factory=MTBench, Config=MTBenchConfig,
                description="MT-Bench: two-turn questions graded 1-10 by a judge (MT-1, MT-2).")
