"""Ref-GPT4: in-domain quality on unseen samples of the training dataset, graded 1–10 by a
judge given the human reference (FedLLM-Bench §3.4): same language as the question, answers the
request, factually and semantically sound, fluent. Multilingual data is scored per language.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, hookimpl
from fedllm.errors import DataError

from .common import JudgedBase, JudgedFields, load_rows, summarize, write_report
from .generation import generate_answers
from .mt_bench import _gen
from .progress import grade

if TYPE_CHECKING:
    from fedllm.context import RunContext


SYSTEM = "You are a helpful assistant."
CRITERIA = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
    "provided by an AI assistant to the user question displayed below. {ref_clause}Your "
    "evaluation should consider: (1) whether the response is in the same language as the "
    "question, (2) whether it answers the request, (3) whether it is factually and semantically "
    "sound, and (4) whether it is fluent. Begin your evaluation by providing a short "
    "explanation. Be as objective as possible. After providing your explanation, you must rate "
    "the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n{reference}"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]")
REF_CLAUSE = "You will be given a human reference answer; compare the response with it. "
REF_BLOCK = "[The Start of Reference Answer]\n{ref}\n[The End of Reference Answer]\n\n"
PROMPT_VERSION = "ref-judge-v1"


class RefJudgeConfig(JudgedFields):
    source: str = Field("heldout", description="'heldout': the run dataset's held-out split; "
                        "otherwise an HF id or a file of {instruction, reference|response, "
                        "language?} records (or {language: [records]}).")
    split: str = Field("test", description="Split of the HF dataset.")
    samples: int = Field(50, ge=1, description="Samples scored (FedLLM-Bench: 50).")
    per_language: int = Field(20, ge=1, description="Samples per language when the data has "
                              "a 'language' column (FedLLM-Bench Aya: 20).")
    seed: int = Field(0, ge=0, description="Which samples are drawn.")
    max_new_tokens: int = Field(1024, ge=1)


class RefJudge(JudgedBase):
    name = "ref-judge"

    def __init__(self, config: RefJudgeConfig):
        super().__init__(config)
        self.needs_data = config.source == "heldout"

    def problems(self, ctx) -> list[str]:
        if not self.config.judge:
            return ["ref-judge.judge: Ref-GPT4 needs a judge; got null"]
        ds = ctx.dataset
        if self.needs_data and ds is not None and (ds.heldout is None or len(ds.heldout) == 0):
            return ["ref-judge.source: 'heldout' but the dataset has no held-out split (set "
                    "dataset.heldout, or give a test-set path)"]
        return []

    def _rows(self, ctx) -> list[dict]:
        c = self.config
        if c.source == "heldout":
            ds = ctx.dataset
            if ds is None or ds.heldout is None or len(ds.heldout) == 0:
                raise DataError("ref-judge.source: 'heldout' but the dataset has no held-out "
                                "split (set dataset.heldout, or give a test-set path)")
            rows = ds.heldout.to_list()
        else:
            rows = load_rows(c.source, field="ref-judge.source", split=c.split)
        rng = random.Random(c.seed)
        if rows and all(r.get("language") for r in rows):
            by: dict[str, list[dict]] = {}
            for r in rows:
                by.setdefault(r["language"], []).append(r)
            picked = []
            for lang in sorted(by):
                group = by[lang]
                picked += rng.sample(group, min(c.per_language, len(group)))
        else:
            picked = rng.sample(rows, min(c.samples, len(rows)))
        return picked[: c.max_samples] if c.max_samples else picked

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        c = self.config
        rows = self._rows(ctx)
        qs = []
        for r in rows:
            if not r.get("instruction"):
                raise DataError(f"ref-judge.source: a sample has no 'instruction' "
                                f"(columns {sorted(r)})")
            qs.append(r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""))
        refs = [r.get("reference") or r.get("response") or r.get("output") for r in rows]
        self.judge.preflight()
        answers = generate_answers(ctx, model, [[{"role": "user", "content": q}] for q in qs], c,
                                   "ref-judge: generating")
        requests = [(SYSTEM, CRITERIA.format(
            ref_clause=REF_CLAUSE if ref else "", question=q, answer=a,
            reference=REF_BLOCK.format(ref=ref) if ref else "")) for q, a, ref in zip(qs, answers,
                                                                                    refs)]
        graded = grade(ctx, self.judge, "ref-judge: judging", requests, repeats=c.judge_repeats,
                                  prompt_version=PROMPT_VERSION)
        langs = [r.get("language") or "all" for r in rows]
        s = summarize([[g["rating"] for g in item] for item in graded], langs, c.unparsed)
        languages = {k: v["score"] for k, v in s.pop("groups").items()}
        s["with_reference"] = sum(bool(x) for x in refs)
        records = [{"language": lang, "question": q, "reference": ref, "answer": a,
                    "judgments": g} for lang, q, ref, a, g in zip(langs, qs, refs, answers, graded)]
        write_report(ctx, self.name, cohort, round, {
            "scores": s, "languages": languages, "judge": self.judge_record(PROMPT_VERSION),
            "generation": _gen(c), "items": records})
        out = {**s}
        if len(languages) > 1:
            out["languages"] = languages
        return out


plugin = Plugin(kind="evaluator", name="ref-judge", factory=RefJudge, Config=RefJudgeConfig,
                description="Ref-GPT4: unseen in-domain samples graded 1-10 against the human "
                "reference, per language.")
