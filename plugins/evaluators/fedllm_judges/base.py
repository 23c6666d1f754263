"""What every judge shares: the rating parser, the on-disk judgment cache and repeats.

A judge component turns ``(system, user, repeat)`` prompts into texts (``fedllm_judge``); the
:class:`Grader` evaluators use wraps it with a cache keyed by sha256 of the judge's identity
(kind, model, settings), the prompt version and the prompt itself, so a re-run pays for nothing
already graded and an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedllm import Judge
from fedllm.errors import FedLLMError
from fedllm.paths import atomic_write_json, fedllm_home

if TYPE_CHECKING:
    from fedllm.plugins import RunComponent

# MT-Bench's own patterns: "[[7]]" first, then a single-bracket "[7]" as a fallback.
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(text: str | None, low: float = 0.0, high: float = 10.0) -> float | None:
    """The rating in a judgment (``[[7]]``, ``Rating: [[7.5]]``), or ``None`` if there is no
    rating in range; the last match wins (judges restate the format before rating)."""
    if not text:
        return None
    for pattern in (_RATING, _RATING_BACKUP):
        found = pattern.findall(text)
        if found:
            value = float(found[-1])
            return value if low <= value <= high else None
    return None


class JudgmentCache:
    """One JSON file per judgment under ``root/<key[:2]>/<key>.json`` (atomic writes)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is simply paid for again

    def put(self, key: str, value: dict[str, Any]) -> None:
        atomic_write_json(self._path(key), value)


class JudgeBase(Judge):
    """Base of this package's judges: their config carries the judgment cache location."""

    def __init__(self, config):
        self.config = config


class Grader:
    """Grades prompts with a judge component, through the on-disk judgment cache; repeats,
    chunking (an interrupted evaluation keeps what was paid for) and the rating parser."""

    def __init__(self, judge: RunComponent):
        self.judge = judge
        root = getattr(judge.config, "cache_dir", None)
        self.cache = JudgmentCache(Path(root) if root else fedllm_home() / "judge-cache")
        self.stats = {"calls": 0, "cached": 0}
        self._identity: dict[str, Any] | None = None
        self._ready = False

    def identity(self) -> dict[str, Any]:
        """Judge name, model and every setting that changes its output (recorded with scores)."""
        if self._identity is None:
            self._identity = self.judge.call("fedllm_judge_identity") or {}
        return self._identity

    def preflight(self, ctx=None) -> None:
        """Fail fast (bad key, unreachable endpoint, missing model) before generation; once
        per grader (the run's checks and the evaluation share it)."""
        if self._ready:
            return
        problems = self.judge.call("fedllm_check", ctx=ctx) or []
        if problems:
            raise FedLLMError("; ".join(problems))
        self._ready = True

    def key(self, system: str, user: str, repeat: int, prompt_version: str) -> str:
        blob = json.dumps({"judge": self.identity(), "prompt_version": prompt_version,
                           "system": system, "user": user, "repeat": repeat}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def grade(self, prompts: list[tuple[str, str]], repeats: int = 1,
              prompt_version: str = "", on_progress=None) -> list[list[dict[str, Any]]]:
        """Grade every ``(system, user)`` prompt ``repeats`` times; returns, per prompt, one
        ``{"text", "rating", "cached"}`` per repeat (``rating`` is ``None`` if unparseable).
        ``on_progress(done, total)`` is called after each chunk."""
        out: list[list[dict[str, Any] | None]] = [[None] * repeats for _ in prompts]
        todo: list[tuple[int, int, str]] = []
        for i, (system, user) in enumerate(prompts):
            for r in range(repeats):
                k = self.key(system, user, r, prompt_version)
                hit = self.cache.get(k)
                if hit is not None:
                    out[i][r] = {**hit, "cached": True}
                    self.stats["cached"] += 1
                else:
                    todo.append((i, r, k))
        step = max(1, self.judge.cap("concurrency")) * 4
        for s in range(0, len(todo), step):
            chunk = todo[s:s + step]
            texts = self.judge.call("fedllm_judge", prompts=[(*prompts[i], r)
                                                             for i, r, _ in chunk])
            if not isinstance(texts, list) or len(texts) != len(chunk):
                raise FedLLMError(f"judge {self.judge.name!r} returned "
                                  f"{type(texts).__name__} for {len(chunk)} prompts; "
                                  "fedllm_judge must return one text per prompt")
            for (i, r, k), text in zip(chunk, texts):
                entry = {"text": text, "rating": parse_rating(text)}
                self.cache.put(k, entry)
                out[i][r] = {**entry, "cached": False}
                self.stats["calls"] += 1
            if on_progress is not None:
                on_progress(min(s + step, len(todo)), len(todo))
        return out  # type: ignore[return-value]


def load_judge(spec: dict[str, Any] | None) -> Grader | None:
    """Build the judge named in an evaluator's ``judge`` section (validated already)."""
    if not spec:
        return None
    from fedllm.plugins import build, load

    info = load("judge", spec["name"])
    cfg = info.plugin.Config.model_validate({k: v for k, v in spec.items() if k != "name"})
    return Grader(build(info, cfg))


DEFAULT_JUDGE = "openai-compatible"


def validate_judge_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """Pydantic validator body for an evaluator's ``judge`` field: the judge must be installed
    and its settings valid, so bad judge config fails at config time with its field names."""
    if spec is None:
        return None
    if isinstance(spec, dict) and "name" not in spec:  # `--set x.judge.model=...` alone
        spec = {"name": DEFAULT_JUDGE, **spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError("must be a mapping with a 'name' naming a judge plugin, e.g. "
                         "{name: openai-compatible, model: gpt-4}")
    from pydantic import ValidationError

    from fedllm.errors import FedLLMError
    from fedllm.plugins import load

    try:
        info = load("judge", spec["name"])
    except FedLLMError as exc:
        raise ValueError(str(exc)) from None
    try:
        cfg = info.plugin.Config.model_validate({k: v for k, v in spec.items() if k != "name"})
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                         for e in exc.errors())
        raise ValueError(f"judge {spec['name']!r}: {msgs}") from None
    return {"name": info.name, **cfg.model_dump(mode="json")}
