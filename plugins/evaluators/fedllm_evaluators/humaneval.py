"""HumanEval: generate completions for the 164 problems and run each problem's unit tests in
the sandbox (``sandbox.py``); pass@k with the unbiased estimator of Chen et al. (2021)."""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from fedllm import Evaluator, Plugin, hookimpl, lazy

from .common import GenerationFields, first_of, load_rows, write_report
from .generation import generate_texts, render_prompts
from .sandbox import isolation, run_program

if TYPE_CHECKING:
    import numpy as np

    from fedllm.context import RunContext
else:
    np = lazy.module('numpy')

STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
INSTRUCTION = "Complete the following Python function. Reply with the code only.\n\n" \
              "```python\n{prompt}```"
_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.S)


class HumanEvalConfig(GenerationFields):
    path: str = Field("openai/openai_humaneval", description="Problems: HF id or a "
                      "HumanEval.jsonl(.gz) file.")
    split: str = Field("test", description="Split of the HF dataset.")
    prompt_style: Literal["template", "completion"] = Field(
        "template", description="'template': the task's prompt template around an instruction "
        "(as in training); 'completion': the raw function prompt is continued.")
    n_samples: int = Field(1, ge=1, description="Completions per problem (n of pass@k).")
    k: list[int] = Field([1, 10, 100], description="pass@k reported for each k <= n_samples.")
    max_new_tokens: int = Field(512, ge=1)
    timeout: float = Field(10.0, gt=0, description="Wall-clock seconds per program.")
    memory_mb: int = Field(2048, ge=64, description="Address-space limit per program.")
    workers: int = Field(4, ge=1, description="Programs run at once.")
    unsafe_allow_unisolated_execution: bool = Field(
        False, description="Run the generated code even where the kernel cannot isolate it "
        "(no bubblewrap, no user namespaces): then only rlimits and an audit hook stand "
        "between it and this machine. Leave it false.")

    @model_validator(mode="after")
    def _sampling(self) -> "HumanEvalConfig":
        if self.n_samples > 1 and self.temperature == 0:
            raise ValueError(f"n_samples={self.n_samples} with temperature=0 would repeat one "
                             "greedy completion; set temperature > 0 (e.g. 0.8) for pass@k")
        return self


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: 1 - C(n-c, k) / C(n, k), computed stably."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def extract_code(text: str, style: str) -> str:
    """The code in a generation: a fenced block if there is one; in completion style, cut at
    the first line that starts a new top-level statement (HumanEval's stop sequences)."""
    m = _FENCE.search(text)
    if m:
        return m.group(1)
    if style == "completion":
        cut = min((i for i in (text.find(s) for s in STOP) if i >= 0), default=len(text))
        return text[:cut]
    return text


def build_program(problem: dict, completion: str, nonce: str = "") -> str:
    """The program a sandbox runs: prompt + completion + the problem's tests. With a ``nonce``,
    the program prints it after ``check()`` returned: a completion that exits early (``sys.exit
    (0)`` before the tests) then cannot pass."""
    # The prompt ends with a signature + docstring (a valid body on its own), so a completion
    # may continue that body or redefine the whole function; both run.
    tail = f"print({nonce!r})\n" if nonce else ""
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            f"check({problem['entry_point']})\n" + tail)


def passed(result, nonce: str) -> bool:
    """A program passes when it exits 0 within its time and its tests ran to the end."""
    return result.passed and nonce in result.stdout


class HumanEval(Evaluator):
    name = "humaneval"
    needs_data = False

    def __init__(self, config: HumanEvalConfig):
        self.config = config

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        """Refuse, before the run starts, to execute generated code where it cannot be
        isolated (unless explicitly allowed)."""
        iso = isolation()
        if iso.isolated or self.config.unsafe_allow_unisolated_execution:
            return None
        return [f"humaneval: cannot isolate generated code here ({iso.detail}); install "
                "bubblewrap or enable user namespaces, or set humaneval."
                "unsafe_allow_unisolated_execution: true knowing the risk"]

    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        c = self.config
        rows = load_rows(c.path, field="humaneval.path", split=c.split)
        rows = rows[: c.max_samples] if c.max_samples else rows
        for r in rows:
            for key in ("prompt", "test", "entry_point"):
                first_of(r, (key,), "humaneval.path")
        if c.prompt_style == "template":
            texts = render_prompts(ctx, [[{"role": "user",
                                           "content": INSTRUCTION.format(prompt=r["prompt"])}]
                                         for r in rows])
        else:
            texts = [r["prompt"] for r in rows]
        gens = generate_texts(model, ctx.tokenizer, texts * c.n_samples,
                              max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
                              temperature=c.temperature)
        n = len(rows)
        jobs = [(i % n, extract_code(g, c.prompt_style)) for i, g in enumerate(gens)]
        deny = [ctx.run_dir] if ctx.run_dir else []
        nonce = secrets.token_hex(16)

        def run(job):
            i, code = job
            res = run_program(build_program(rows[i], code, nonce), timeout=c.timeout,
                              memory_mb=c.memory_mb, deny=deny,
                              allow_unisolated=c.unsafe_allow_unisolated_execution)
            if res.status == "passed" and not passed(res, nonce):
                res.status = "failed"  # exited 0 without running the tests to the end
            return res

        with ThreadPoolExecutor(c.workers) as pool:
            results = list(pool.map(run, jobs))
        per: list[list[dict]] = [[] for _ in rows]
        for (i, code), g, res in zip(jobs, gens, results):
            per[i].append({"generation": g, "completion": code, "status": res.status,
                           "seconds": float(f"{res.seconds:.3f}"), "stderr": res.stderr[-500:]})
        correct = [sum(s["status"] == "passed" for s in samples) for samples in per]
        scores: dict[str, Any] = {"n": n, "n_samples": c.n_samples}
        for k in c.k:
            if k <= c.n_samples:
                scores[f"pass@{k}"] = float(np.mean([pass_at_k(c.n_samples, x, k)
                                                     for x in correct])) if n else None
        scores["timeouts"] = sum(s["status"] == "timeout" for p in per for s in p)
        write_report(ctx, self.name, cohort, round, {
            "scores": scores, "sandbox": {"isolation": isolation().describe(),
                                          "timeout": c.timeout, "memory_mb": c.memory_mb},
            "items": [{"task_id": r.get("task_id"), "samples": s} for r, s in zip(rows, per)]})
        return scores


plugin = Plugin(kind="evaluator", name="humaneval", factory=HumanEval, Config=HumanEvalConfig,
                description="HumanEval: pass@k of generated code run in a sandbox.")
