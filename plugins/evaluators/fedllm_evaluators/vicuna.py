"""Vicuna bench: 80 one-turn questions, single-answer grading 1–10 by a judge."""

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
from .mt_bench import _gen, load_judge_prompts, need
from .progress import grade

if TYPE_CHECKING:
    from fedllm.context import RunContext



class VicunaConfig(JudgedFields):
    questions: str | None = Field(None, description="Vicuna bench questions: FastChat "
                                  "llm_judge/data/vicuna_bench/question.jsonl, or an HF id.")
    judge_prompts: str | None = Field(None, description="MT-Bench judge_prompts.jsonl "
                                      "(its 'single-v1' prompt is used).")
    split: str = Field("test", description="Split of the HF dataset.")
    max_new_tokens: int = Field(1024, ge=1)


class Vicuna(JudgedBase):
    name = "vicuna"
    needs_data = False

    def __init__(self, config: VicunaConfig):
        super().__init__(config)
        self._prompt: dict[str, Any] | None = None

    @property
    def prompt(self) -> dict[str, Any]:
        if self._prompt is None:
            self._prompt = need(load_judge_prompts(self.config.judge_prompts,
                                                   "vicuna.judge_prompts"),
                                "single-v1", "vicuna.judge_prompts")
        return self._prompt

    def problems(self, ctx) -> list[str]:
        out = []
        if not self.config.judge:
            out.append("vicuna.judge: the Vicuna bench needs a judge; got null")
        if not self.config.questions:
            out.append("vicuna.questions: the path (or HF id) of the Vicuna bench "
                       "question.jsonl is required")
        try:
            _ = self.prompt
        except (ConfigError, DataError) as exc:
            out.append(str(exc))
        return out

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        c = self.config
        prompt = self.prompt
        rows = load_rows(c.questions, field="vicuna.questions", split=c.split)
        rows = rows[: c.max_samples] if c.max_samples else rows
        qs = [first_of(r, ("turns", "prompt", "text"), "vicuna.questions") for r in rows]
        qs = [q[0] if isinstance(q, list) else q for q in qs]
        self.judge.preflight()
        answers = generate_answers(ctx, model, [[{"role": "user", "content": q}] for q in qs], c,
                                   "vicuna: generating")
        requests = [(prompt["system_prompt"], prompt["prompt_template"].format(question=q,
                                                                              answer=a))
                    for q, a in zip(qs, answers)]
        version = "vicuna-single-v1"
        graded = grade(ctx, self.judge, "vicuna: judging",
                       requests, repeats=c.judge_repeats, prompt_version=version)
        cats = [r.get("category", "general") for r in rows]
        s = summarize([[g["rating"] for g in item] for item in graded], cats, c.unparsed)
        categories = {k: v["score"] for k, v in s.pop("groups").items()}
        records = [{"question_id": r.get("question_id"), "category": cat, "question": q,
                    "answer": a, "judgments": g}
                   for r, cat, q, a, g in zip(rows, cats, qs, answers, graded)]
        write_report(ctx, self.name, cohort, round, {
            "scores": s, "categories": categories, "judge": self.judge_record(version),
            "generation": _gen(c), "items": records})
        return {**s, "categories": categories}


plugin = Plugin(kind="evaluator", name="vicuna", factory=Vicuna, Config=VicunaConfig,
                description="Vicuna bench: one-turn questions graded 1-10 by a judge.")
