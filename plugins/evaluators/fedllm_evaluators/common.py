"""Shared pieces of the benchmark evaluators: data loading, config fields, judged scoring and
the ``eval/<evaluator>.json`` report."""

from __future__ import annotations

import csv
import gzip
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from fedllm import Evaluator, PluginConfig, hookimpl
from fedllm.errors import DataError, FedLLMError
from fedllm.paths import atomic_write_json
from fedllm_judges.base import load_judge, validate_judge_spec

# --------------------------------------------------------------------------- data


def _read_text(p: Path) -> str:
    raw = p.read_bytes()
    if p.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def load_rows(source: str, *, field: str, split: str = "test",
              subset: str | None = None) -> list[dict[str, Any]]:
    """Rows of a benchmark from a local file (.json/.jsonl/.csv/.parquet, optionally .gz) or,
    if ``source`` is not an existing path, a Hugging Face dataset id."""
    p = Path(source).expanduser()
    if p.exists():
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            return [r for f in files for r in load_rows(str(f), field=field)]
        name = p.name[:-3] if p.name.endswith(".gz") else p.name
        try:
            if name.endswith(".parquet"):
                import datasets
                return datasets.Dataset.from_parquet(str(p)).to_list()
            text = _read_text(p)
            if name.endswith(".jsonl"):
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            if name.endswith(".csv"):
                return list(csv.DictReader(io.StringIO(text)))
            data = json.loads(text)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{field}: cannot read {str(p)!r}: {exc}") from None
        if isinstance(data, list):
            return data
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
            # {language: [rows]} (the Fed-Aya test set layout)
            return [{"language": k, **r} for k, rows in data.items() for r in rows]
        raise DataError(f"{field}: {str(p)!r} holds a {type(data).__name__}; expected a list "
                        "of records or a mapping of lists")
    try:
        import datasets
        ds = datasets.load_dataset(source, subset, split=split)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the same user problem
        raise DataError(f"{field}: {source!r} is not an existing file and could not be loaded "
                        f"as a Hugging Face dataset (split {split!r}): "
                        f"{type(exc).__name__}: {str(exc)[:300]}") from None
    return ds.to_list()


def first_of(row: dict[str, Any], keys: tuple[str, ...], field: str) -> Any:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return row[k]
    raise DataError(f"{field}: a record has none of the columns {list(keys)} "
                    f"(it has {sorted(row)})")


# --------------------------------------------------------------------------- config


class GenerationFields(PluginConfig):
    max_new_tokens: int = Field(1024, ge=1, description="Max tokens generated per answer.")
    batch_size: int = Field(8, ge=1, description="Prompts generated together (left-padded).")
    temperature: float = Field(0.0, ge=0, description="0: greedy decoding.")
    max_samples: int | None = Field(None, ge=1, description="Evaluate only the first N items "
                                    "(None: all).")


class JudgedFields(GenerationFields):
    judge: dict[str, Any] | None = Field(
        {"name": "openai-compatible"}, description="The judge: {name: <judge plugin>, "
        "<its settings>} (see `fedllm plugins --kind judge`).")
    judge_repeats: int = Field(1, ge=1, description="Grade each answer N times; report "
                               "mean and sd across repeats (--judge-repeats).")
    unparsed: Literal["exclude", "min"] = Field(
        "exclude", description="A judgment with no parseable rating: leave it out of the mean "
        "(it is always counted and reported) or score it 1.")

    @field_validator("judge", mode="before")
    @classmethod
    def _judge(cls, v):
        return validate_judge_spec(v)


# --------------------------------------------------------------------------- scoring


def summarize(ratings: list[list[float | None]], groups: list[str] | None,
              policy: str) -> dict[str, Any]:
    """``ratings[item][repeat]`` → overall mean/sd across repeats, per-group means, and the
    count of unparseable judgments."""
    repeats = len(ratings[0]) if ratings else 0
    unparsed = sum(r is None for item in ratings for r in item)

    def value(r):
        return 1.0 if (r is None and policy == "min") else r

    def mean_of(items: list[int]) -> tuple[float | None, float | None]:
        per_repeat = []
        for k in range(repeats):
            vals = [value(ratings[i][k]) for i in items]
            vals = [v for v in vals if v is not None]
            if vals:
                per_repeat.append(sum(vals) / len(vals))
        if not per_repeat:
            return None, None
        sd = statistics.stdev(per_repeat) if len(per_repeat) > 1 else 0.0
        return sum(per_repeat) / len(per_repeat), sd

    score, sd = mean_of(list(range(len(ratings))))
    out: dict[str, Any] = {"score": score, "sd": sd, "n": len(ratings),
                           "judgments": len(ratings) * repeats, "unparsed": unparsed}
    if groups is not None:
        by: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by.setdefault(g, []).append(i)
        out["groups"] = {g: dict(zip(("score", "sd"), mean_of(ix)), n=len(ix))
                         for g, ix in sorted(by.items())}
    return out


class JudgedBase(Evaluator):
    """Judge lifecycle for evaluators that grade answers with a judge LLM."""

    needs_data = False

    def __init__(self, config):
        self.config = config
        self._judge = None

    @property
    def judge(self):
        if self._judge is None and self.config.judge:
            self._judge = load_judge(self.config.judge)
        return self._judge

    def problems(self, ctx) -> list[str]:
        """This evaluator's own checks (files it needs); the judge's preflight follows."""
        return []

    @hookimpl
    def fedllm_check(self, ctx) -> list[str] | None:
        found = self.problems(ctx)
        if not found and self.judge is not None:
            try:
                self.judge.preflight(ctx)
            except FedLLMError as exc:
                found.append(f"{self.name}.judge: {exc}")
        return found or None

    def judge_record(self, prompt_version: str) -> dict[str, Any]:
        j = self.judge
        return {"identity": j.identity(), "repeats": self.config.judge_repeats,
                "prompt_version": prompt_version, "unparsed_policy": self.config.unparsed,
                "calls": j.stats["calls"], "cached": j.stats["cached"]} if j else {}


def report_path(ctx, name: str, cohort: str, round: int | None) -> Path | None:
    return ctx.eval_path(name, cohort, round)


def write_report(ctx, name: str, cohort: str, round: int | None,
                 payload: dict[str, Any]) -> None:
    """``eval/<evaluator>/round-N.json``: every answer, every judgment and the scores (atomic)."""
    path = report_path(ctx, name, cohort, round)
    if path is not None:
        atomic_write_json(path, {"evaluator": name, "cohort": cohort,
                                 "round": None if round is None else round + 1,
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 **payload})
